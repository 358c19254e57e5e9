# From a fresh clone:   make run    (set up .venv, fit the built-in samples)
#                       make test   (set up .venv with the dev extra, run `pytest -q`)
# Arguments pass through: make run ARGS="--activation finer"   make test ARGS="-m 'not slow'"
#
# Each target creates .venv if it is missing, installs torch once (the CUDA build when
# `nvidia-smi` sees a GPU, the CPU build otherwise; TORCH=cpu|cuda|keep chooses), then inrkit
# in editable mode with the extras the target needs. Stamp files under .venv remember what is
# installed, so a second call starts at once; editing pyproject.toml reinstalls.

SHELL := /bin/bash
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
ARGS ?=
# The extras `make setup` installs (CI: EXTRAS=dev,docs,release).
EXTRAS ?= dev
# auto: keep a torch already in the venv, else CUDA when nvidia-smi lists a GPU, else CPU;
# cpu or cuda install that build (over any other); keep: use the torch you installed yourself.
TORCH ?= auto
# The CPU build: pinned, because an unpinned `torch` from PyPI is the multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0
# The CUDA build: the project's own range, from PyTorch's CUDA index.
TORCH_CUDA ?= torch>=2.1,<3
TORCH_CUDA_INDEX ?= https://download.pytorch.org/whl/cu126

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
ACTIVATE := . $(BIN)/activate
say = @printf 'make: %s\n'

.PHONY: help run test setup lint docs dist clean distclean
.PRECIOUS: $(VENV)/.inrkit-%

help:
	@echo "make run  [ARGS=...]   set up .venv and run 'inrkit run ARGS' (no ARGS: the built-in samples)"
	@echo "make test [ARGS=...]   set up .venv with the dev extra and run 'pytest -q ARGS'"
	@echo "make setup             only set up .venv (EXTRAS=dev; e.g. EXTRAS=dev,docs), then . .venv/bin/activate"
	@echo "make lint              ruff and mypy, as CI runs them"
	@echo "make docs              build the site with mkdocs --strict into site/"
	@echo "make dist              build the sdist and wheel into dist/ and check them with twine"
	@echo "make clean             remove build outputs (build/, dist/, site/, caches); distclean also .venv"
	@echo "TORCH=auto|cpu|cuda|keep chooses the torch build (auto: CUDA when nvidia-smi sees a GPU)"

run: $(VENV)/.inrkit
	@$(ACTIVATE) && inrkit run $(ARGS)

test: $(VENV)/.inrkit-dev
	@$(ACTIVATE) && pytest -q $(ARGS)

setup: $(VENV)/.inrkit-$(EXTRAS)
	$(say) "ready: . $(BIN)/activate"

lint: $(VENV)/.inrkit-dev
	@$(ACTIVATE) && ruff check inrkit plugins examples && mypy

docs: $(VENV)/.inrkit-docs
	@$(ACTIVATE) && NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet && echo "site/ built"

dist: $(VENV)/.inrkit-release
	@rm -rf dist && $(ACTIVATE) && { log=$$(python -m build --outdir dist . 2>&1) || { echo "$$log"; exit 1; }; } \
	  && ls dist && python -m twine check --strict dist/*

clean:
	rm -rf build dist site .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# --- the environment ---------------------------------------------------------------------

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "make: inrkit needs Python 3.10 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1). Use make PYTHON=python3.11 ..." >&2; exit 1; }
	$(say) "creating $(VENV) with $$($(PYTHON) -V)"
	@$(PYTHON) -m venv $(VENV)

# torch, once per venv and choice: the build depends on the machine, not on pyproject.toml.
# auto keeps a torch that is already there; TORCH=cpu or TORCH=cuda installs that build over it.
$(VENV)/.torch-$(TORCH): | $(BIN)/python
	@set -e; choice="$(TORCH)"; \
	if [ "$$choice" = auto ] && $(BIN)/python -c 'import torch' 2>/dev/null; then \
	  choice=keep; echo "make: torch is already in $(VENV); keeping it (TORCH=cpu or TORCH=cuda replaces it)"; \
	elif [ "$$choice" = auto ]; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then choice=cuda; \
	    why="nvidia-smi lists $$(nvidia-smi -L | grep -c '^GPU') GPU(s)"; \
	  else choice=cpu; why="nvidia-smi finds no NVIDIA GPU"; fi; \
	else why="TORCH=$$choice"; fi; \
	case "$$choice" in \
	  keep) if [ "$(TORCH)" = keep ]; then echo "make: TORCH=keep: using the torch already in $(VENV)"; fi;; \
	  cpu) echo "make: torch: CPU build ($$why): pip install '$(TORCH_CPU)'"; \
	       $(PIP) install -qq '$(TORCH_CPU)';; \
	  cuda) echo "make: torch: CUDA build ($$why): pip install '$(TORCH_CUDA)' --index-url $(TORCH_CUDA_INDEX)"; \
	        $(PIP) install -qq '$(TORCH_CUDA)' --index-url $(TORCH_CUDA_INDEX);; \
	  *) echo "make: TORCH must be auto, cpu, cuda or keep (got '$$choice')" >&2; exit 2;; \
	esac; \
	$(BIN)/python -W ignore -c 'import torch; print("make: torch", torch.__version__, "(CUDA " + str(torch.version.cuda) + ")" if torch.version.cuda else "(CPU only)")'
	@touch $@

# inrkit itself (editable), without extras: what `make run` needs. Any install with extras
# already covers it.
$(VENV)/.inrkit: pyproject.toml | $(VENV)/.torch-$(TORCH)
	@if [ -n "$$(find $(VENV) -maxdepth 1 -name '.inrkit-*' -newer pyproject.toml)" ]; then :; else \
	  printf 'make: %s\n' "installing inrkit (pip install -e .)"; $(PIP) install -qq -e .; fi
	@touch $@

# inrkit with extras: .inrkit-dev installs -e '.[dev]', .inrkit-dev,docs installs -e '.[dev,docs]'.
$(VENV)/.inrkit-%: pyproject.toml | $(VENV)/.torch-$(TORCH)
	$(say) "installing inrkit with its $* extra (pip install -e '.[$*]')"
	@$(PIP) install -qq -e '.[$*]'
	@touch $@

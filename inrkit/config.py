"""Run configuration as plain, validated data.

A run config names one plugin of each kind plus that plugin's options, written flat beside the
name (``{"name": "siren", "omega": 30}``), so ``--set activation.omega=30`` and a TOML table
``[activation]`` read the same way. Validation happens in two steps: the shape here, then each
plugin's own ``Options`` model once the plugin is known (:func:`resolve`).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic

from inrkit.errors import ConfigError, format_validation_error, one_line
from inrkit.interfaces import Activation, Callback, NoBoolCounts, Plugin, PluginOptions, SharingStrategy, Signal
from inrkit.limits import MAX_JSON_BYTES, MAX_LAYERS, MAX_STEPS, MAX_WIDTH
from inrkit.plugins import PluginRegistry, get_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_ACTIVATION = "siren"
DEFAULT_SHARING = "minr"
DEFAULT_SIGNAL = "image"
DEFAULT_PLUGINS = {"activation": DEFAULT_ACTIVATION, "sharing": DEFAULT_SHARING, "signal": DEFAULT_SIGNAL}
#: Steps of the no-data demo (four built-in samples) unless the user sets ``train.steps``:
#: keeps ``inrkit run`` with no arguments under two minutes on a 2-core CPU.
DEMO_STEPS = 100


class PluginChoice(pydantic.BaseModel):
    """A plugin name plus its options, the options kept flat beside the name."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(NoBoolCounts):
    model_config = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)

    #: Hidden width of the MLP (at most :data:`~inrkit.limits.MAX_WIDTH`).
    width: int = pydantic.Field(256, gt=0, le=MAX_WIDTH)
    #: Linear layers of one plain MLP, as the paper counts them (first + hidden + last; at most
    #: :data:`~inrkit.limits.MAX_LAYERS`).
    layers: int = pydantic.Field(5, ge=2, le=MAX_LAYERS)


class TrainConfig(NoBoolCounts):
    model_config = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)

    #: Optimisation steps; each step sees every point of every item once (at most
    #: :data:`~inrkit.limits.MAX_STEPS`).
    steps: int = pydantic.Field(300, gt=0, le=MAX_STEPS)
    #: Adam learning rate; ``None`` takes the activation's default.
    lr: float | None = pydantic.Field(None, gt=0)
    #: The shared parameters' learning rate as a multiple of ``lr`` (the per-item ones keep
    #: ``lr``); 1 trains everything alike. An option for MINR, whose shared layers see every item's
    #: gradient each step (see "Comparing methods honestly" for what it measured).
    shared_lr_scale: float = pydantic.Field(1.0, gt=0, le=1000)
    #: Items trained per step (item mini-batches); ``None`` (the default) trains every item every
    #: step. Each step then draws K items (every item once per epoch, a seeded shuffle per epoch);
    #: the shared layers update every step, each item's rows and Adam state only when it is drawn
    #: (per-item bias correction). A value of at least the item count is the default behaviour.
    items_per_step: int | None = pydantic.Field(None, ge=1)
    #: Learning rate at the last step as a fraction of ``lr`` (decayed as ``ratio ** (t / T)``).
    lr_final_ratio: float = pydantic.Field(0.1, gt=0, le=1)
    #: Points per item per chunk (gradients accumulate over chunks); ``auto`` picks by device.
    chunk_points: int | Literal["auto"] = "auto"
    #: Seed for initialisation; the same seed gives bit-identical reruns on the CPU.
    seed: int = pydantic.Field(0, ge=0, lt=2**63)
    #: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    #: Record loss/PSNR (and refresh the progress bar) every this many steps; 0 picks ~100 records.
    log_every: int = pydantic.Field(0, ge=0)
    #: Save a resumable snapshot (``resume.pt``) every this many steps; 0: only when interrupted.
    checkpoint_every: int = pydantic.Field(0, ge=0)
    #: On CUDA, let float32 matrix products use TF32 tensor cores (no effect on the CPU).
    tf32: bool = True
    #: ``fp32``, or ``bf16`` to autocast the network's forward pass to bfloat16 (the first layer,
    #: the activations and the loss stay float32). Meant for GPUs with bf16 tensor cores.
    precision: Literal["fp32", "bf16"] = "fp32"
    #: Compile the training step with ``torch.compile``: ``true`` always, ``false`` never,
    #: ``auto`` (the default) when inductor can run here and the fit is long enough to repay the
    #: compilation (:func:`~inrkit.training.perf.compile_pays`: the first eager steps are timed;
    #: ``metrics.json`` says what was decided and why). Complex-valued networks stay eager.
    compile: bool | Literal["auto"] = "auto"
    #: Evaluate (render every item's evaluation view, PSNR/SSIM) every this many steps and tell
    #: the callbacks; 0: only after the last step. Costs a render of every item each time.
    eval_every: int = pydantic.Field(0, ge=0)
    #: Callback plugins watching the fit (``--log NAME``): a name, or a name plus options
    #: (``{"name": "tensorboard", "log_dir": "tb/"}``). The progress bar is added by ``--progress``.
    callbacks: list[PluginChoice] = []

    @pydantic.field_validator("callbacks", mode="before")
    @classmethod
    def _callback_names(cls, value: Any) -> Any:
        if isinstance(value, (str, dict)):
            value = [value]
        if isinstance(value, list):
            value = [{"name": v} if isinstance(v, str) else v for v in value]
            names = [v.get("name") if isinstance(v, dict) else getattr(v, "name", None) for v in value]
            twice = sorted({n for n in names if n is not None and names.count(n) > 1})
            if twice:
                raise ValueError(f"names {', '.join(map(repr, twice))} more than once")
        return value

    @pydantic.field_validator("chunk_points")
    @classmethod
    def _positive_chunk(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 < value < 2**31:
            raise ValueError("must be a positive number of points (below 2**31) or 'auto'")
        return value


class RunConfig(pydantic.BaseModel):
    """Everything that defines a run; saved as ``config.json`` in the run folder."""

    model_config = pydantic.ConfigDict(extra="forbid")

    activation: PluginChoice = PluginChoice(name=DEFAULT_ACTIVATION)
    sharing: PluginChoice = PluginChoice(name=DEFAULT_SHARING)
    signal: PluginChoice = PluginChoice(name=DEFAULT_SIGNAL)
    #: Files, folders or globs; empty means the signal's built-in samples.
    data: list[str] = []
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @pydantic.model_validator(mode="before")
    @classmethod
    def _default_plugin_names(cls, data: Any) -> Any:
        """A plugin section with options but no name (``--set signal.max_side=64``) keeps the default."""
        if isinstance(data, dict):
            data = dict(data)
            for kind, default in (("activation", DEFAULT_ACTIVATION), ("sharing", DEFAULT_SHARING), ("signal", DEFAULT_SIGNAL)):
                section = data.get(kind)
                if isinstance(section, str):
                    data[kind] = {"name": section}
                elif isinstance(section, dict) and "name" not in section:
                    data[kind] = {"name": default, **section}
        return data


def validate_run_config(data: Mapping[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {format_validation_error(exc)}") from None


#: Most values (mappings, lists and scalars, an alias counted each time it is used) a config
#: file may hold, and how deeply they may nest: a YAML file of aliases to aliases can stand for
#: billions of values in a few lines.
MAX_CONFIG_VALUES = 1_000_000
MAX_CONFIG_DEPTH = 64


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON run config into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found (or not a regular file): {path}")
    if path.suffix.lower() not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"config file {path}: unknown format {path.suffix!r}; use .toml, .yaml or .json")
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ConfigError(f"config file {path} is {size:,} bytes; a config file may hold at most {MAX_JSON_BYTES:,}")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = _load_yaml(text, path)
        else:
            data = json.loads(text)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"config file {path} could not be parsed: it nests too deeply") from None
    except Exception as exc:  # noqa: BLE001 - any parser's error becomes one message
        raise ConfigError(f"config file {path} could not be parsed: {one_line(str(exc)) or type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table/mapping at the top level")
    check_config_size(data, f"config file {path}")
    return data


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load`` (plain data only: tags that build objects are refused), its errors as one
    line naming the file, line and column."""
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = ": ".join(part for part in (exc.context, exc.problem) if part) or type(exc).__name__
        raise ConfigError(f"config file {path} could not be parsed{where}: {one_line(problem)}") from None


def check_config_size(data: Any, where: str) -> None:
    """Refuse configuration data with more than :data:`MAX_CONFIG_VALUES` values or deeper than
    :data:`MAX_CONFIG_DEPTH` (counted without recursion, stopping at the limit)."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{where} holds more than {MAX_CONFIG_VALUES:,} values (YAML aliases count each time they are used)")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where} nests more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if not isinstance(k, str))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def parse_value(text: str) -> Any:
    """Interpret a ``--set`` value: JSON when it parses (numbers, true/false, lists), else text."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ConfigError(f"--set value {text[:40]!r}...: nests too deeply") from None
    except ValueError:
        return text
    check_config_size(value, "--set value")
    return value


def apply_overrides(data: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` assignments (dotted keys) to a nested config dict, returning a copy.

    ``callbacks.NAME.OPTION=VALUE`` sets an option of the callback ``NAME`` in
    ``train.callbacks``, adding the callback when it is not listed yet.
    """
    data = copy.deepcopy(data)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE with a dotted key, e.g. train.steps=500")
        if key.split(".")[0] == "callbacks":
            _set_callback_option(data, assignment, key, parse_value(raw))
            continue
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {assignment!r}: {part!r} is a value, not a section")
            node = child
        node[leaf] = parse_value(raw)
    return data


def _set_callback_option(data: dict[str, Any], assignment: str, key: str, value: Any) -> None:
    """``--set callbacks.NAME.OPTION=VALUE``: the option of ``NAME``'s entry in ``train.callbacks``."""
    parts = key.split(".")
    if len(parts) != 3:
        raise ConfigError(f"--set {assignment!r}: expected callbacks.NAME.OPTION=VALUE, e.g. callbacks.tensorboard.max_items=4")
    _, name, option = parts
    if option == "name":
        raise ConfigError(f"--set {assignment!r}: a callback's name is chosen with --log NAME")
    train = data.setdefault("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"--set {assignment!r}: 'train' is a value, not a section")
    listed = train.get("callbacks")
    given = [listed] if isinstance(listed, (str, dict)) else list(listed or [])
    if not all(isinstance(e, (str, dict)) for e in given):
        raise ConfigError(f"--set {assignment!r}: train.callbacks must list names or tables")
    entries: list[dict[str, Any]] = [{"name": e} if isinstance(e, str) else e for e in given]
    entry = next((e for e in entries if e.get("name") == name), None)
    if entry is None:
        entry = {"name": name}
        entries.append(entry)
    entry[option] = value
    train["callbacks"] = entries


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class ResolvedRun:
    """A validated config together with the plugin instances it names.

    Callbacks are only validated here (their options checked against their ``Options``), not
    created: a callback may open files or need an optional package, which decoding a run that
    once logged to TensorBoard must not require. :meth:`create_callbacks` makes them.
    """

    def __init__(self, config: RunConfig, registry: PluginRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or get_registry()
        self.activation: Activation = self.registry.create("activation", config.activation.name, config.activation.options)
        self.sharing: SharingStrategy = self.registry.create("sharing", config.sharing.name, config.sharing.options)
        self.signal: Signal = self.registry.create("signal", config.signal.name, config.signal.options)
        self.callback_options: list[tuple[str, PluginOptions]] = [
            (choice.name, self.registry.validate_options("callback", choice.name, choice.options))
            for choice in config.train.callbacks
        ]

    def create_callbacks(self) -> list[Callback]:
        """The config's callbacks (``train.callbacks``), in order."""
        return [self.registry.create("callback", name, options) for name, options in self.callback_options]

    def normalized_config(self) -> RunConfig:
        """The config with every plugin option spelled out (defaults included), as saved."""
        data = self.config.model_dump()
        for kind in ("activation", "sharing", "signal"):
            plugin: Plugin = getattr(self, kind)
            data[kind] = {"name": plugin.name, **plugin.options.model_dump(mode="json")}
        data["train"]["callbacks"] = [
            {"name": name, **options.model_dump(mode="json")} for name, options in self.callback_options
        ]
        return RunConfig.model_validate(data)

"""Identical CPU reruns: ``import inrkit`` asks MKL for its strict reproducible code path.

MKL picks a code path per process (alignment, threads), so two identical fits in two processes
could differ in the last bits (measured: one rerun in 12 at float32). ``MKL_CBWR=AUTO,STRICT``,
set by ``import inrkit`` unless the user set it, makes them bit-identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHOW = "import os, inrkit; print(os.environ.get('MKL_CBWR'))"


def _python(code: str, *args: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"} | env
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=environ)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_inrkit_sets_strict_mkl_reproducibility():
    assert _python(SHOW).strip() == "AUTO,STRICT"


def test_a_value_the_user_set_is_kept():
    assert _python(SHOW, MKL_CBWR="COMPATIBLE").strip() == "COMPATIBLE"


FIT = """
import hashlib, sys, imageio.v3 as iio, numpy as np, inrkit
rng = np.random.default_rng(0)
for i in range(2):
    iio.imwrite(f"{sys.argv[1]}/img{i}.png", (rng.random((24, 24, 3)) * 255).astype(np.uint8))
result = inrkit.fit({"model": {"width": 32, "layers": 3}, "train": {"steps": 15, "device": "cpu", "lr": 1e-3}},
                    data=sys.argv[1], save=False)
digest = hashlib.sha256()
for name, tensor in sorted(result.model.state_dict().items()):
    digest.update(name.encode()); digest.update(tensor.detach().cpu().numpy().tobytes())
print(digest.hexdigest())
"""


@pytest.mark.slow
def test_two_processes_fit_bit_identical_weights(tmp_path: Path):
    first, second = _python(FIT, str(tmp_path)), _python(FIT, str(tmp_path))
    assert first.strip() and first == second

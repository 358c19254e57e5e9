"""Fuzzing the doors untrusted data comes through: the config layer, the image readers, and the
files inrkit reads back (``metrics.json``, rd points, failed-run markers, experiment manifests,
the ``.inrz`` header).

Whatever goes in (random ``--set`` strings, TOML/YAML/JSON documents random or mutated, random
bytes, truncated and mutated image files, JSON records of any shape, ``.inrz`` headers mutated
under a valid CRC), what comes out is a valid result or one
:class:`~inrkit.errors.InrkitError`; never another exception, and never a hang (each call runs
under a time limit).
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from conftest import make_image
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from inrkit.config import RunConfig, apply_overrides, read_config_file, validate_run_config
from inrkit.errors import ConfigError, DataError, InrkitError
from inrkit.images import read_pixels, to_channels

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SECONDS = 10


@contextlib.contextmanager
def time_limit(seconds: int = SECONDS) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- the config layer ------------------------------------------------------------------------------
KEYS = st.sampled_from(
    ["train.steps", "train.lr", "model.width", "model.layers", "activation.omega", "sharing.projection",
     "signal.max_side", "train.chunk_points", "data", "train.callbacks", "activation", "x.y.z", "", ".", "a..b"]
)
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["3", "-1", "1e999", "NaN", "Infinity", "[3,4]", "null", "true", "{}", '{"a": 1}', "0.5", "[" * 50, "9" * 40]),
)


@pytest.mark.slow
@FUZZ
@given(st.one_of(st.text(max_size=60), st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES)))
@example("train.steps=" + "[" * 5000)
@example("=")
def test_set_strings_give_a_config_or_one_config_error(assignment: str):
    with time_limit():
        try:
            data = apply_overrides({}, [assignment])
        except ConfigError:
            return
        try:
            config = validate_run_config(data)
        except ConfigError:
            return
        assert isinstance(config, RunConfig)


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4))


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    _containers,
    max_leaves=20,
)
SECTIONS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.dictionaries(st.sampled_from(["width", "layers", "depth"]), JSON_VALUES, max_size=3),
        "train": st.dictionaries(st.sampled_from(["steps", "lr", "seed", "device", "callbacks"]), JSON_VALUES, max_size=3),
        "activation": st.one_of(st.text(max_size=8), st.dictionaries(st.sampled_from(["name", "omega"]), JSON_VALUES, max_size=2)),
        "data": JSON_VALUES,
    },
)


def _check_document(path: Path) -> None:
    with time_limit():
        try:
            data = read_config_file(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)  # one line
            return
        with contextlib.suppress(ConfigError):
            validate_run_config(data)


@FUZZ
@given(doc=SECTIONS, fmt=st.sampled_from(["json", "yaml"]))
def test_structured_documents(tmp_path: Path, doc: dict, fmt: str):
    path = tmp_path / f"c.{fmt}"
    path.write_text(json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc))
    _check_document(path)


VALID = {
    "toml": '[activation]\nname = "siren"\nomega = 30\n\n[model]\nwidth = 8\nlayers = 3\n\n[train]\nsteps = 2\nlr = 1e-3\n',
    "yaml": "activation: {name: siren, omega: 30}\nmodel:\n  width: 8\n  layers: 3\ntrain:\n  steps: 2\n  lr: 0.001\n",
    "json": '{"activation": {"name": "siren"}, "model": {"width": 8, "layers": 3}, "train": {"steps": 2}}',
}


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    chars = list(text)
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        at = draw(st.integers(0, max(len(chars) - 1, 0)))
        if action == "truncate":
            chars = chars[:at]
        elif action == "delete" and chars:
            del chars[at]
        else:
            ch = draw(st.sampled_from(list("{}[]:=,\"'\n #&*!-.0123456789abcxyz\t\\") + ["\x00", "é", "!!python/object"]))
            chars[at : at + (action == "replace")] = [ch]
    return "".join(chars)


@FUZZ
@given(fmt=st.sampled_from(sorted(VALID)), data=st.data())
def test_mutated_documents(tmp_path: Path, fmt: str, data: st.DataObject):
    path = tmp_path / f"c.{fmt}"
    path.write_text(data.draw(mutated(VALID[fmt])), encoding="utf-8")
    _check_document(path)


@FUZZ
@given(fmt=st.sampled_from(["toml", "yaml", "yml", "json"]), raw=st.binary(max_size=200))
def test_random_bytes_as_a_config_file(tmp_path: Path, fmt: str, raw: bytes):
    path = tmp_path / f"c.{fmt}"
    path.write_bytes(raw)
    _check_document(path)


@pytest.mark.parametrize(
    "text",
    [
        # A billion laughs: nine aliases of nine aliases ... stand for 9**9 values in a few lines.
        "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ) + "activation: {name: siren, extra: *i}\n",
        "data: " + "[" * 200 + "]" * 200 + "\n",
        "!!python/object/apply:os.system ['echo pwned']\n",
    ],
    ids=["billion-laughs", "deep", "python-tag"],
)
def test_yaml_bombs_are_refused_quickly(tmp_path: Path, text: str):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with time_limit(5), pytest.raises(ConfigError):
        read_config_file(path)


# -- the image readers -----------------------------------------------------------------------------
def _encoded(kind: str) -> bytes:
    image = make_image(12, 10, seed=3)
    buffer = io.BytesIO()
    if kind == "png16":
        from inrkit.images import write_png

        with tempfile.TemporaryDirectory() as folder:
            path = write_png(Path(folder) / "x.png", image / 255.0, bit_depth=16)
            return path.read_bytes()
    extension = {"png": ".png", "jpeg": ".jpg", "gif": ".gif", "tiff": ".tif", "bmp": ".bmp", "webp": ".webp"}[kind]
    iio.imwrite(buffer, image, extension=extension)
    return buffer.getvalue()


KINDS = ["png", "png16", "jpeg", "gif", "tiff", "bmp", "webp"]
SUFFIX = {"png16": ".png", "jpeg": ".jpg"}
ENCODED = {kind: _encoded(kind) for kind in KINDS}


def _check_image(path: Path) -> None:
    with time_limit():
        try:
            pixels = read_pixels(path)
        except DataError as exc:
            assert "\n" not in str(exc)
            return
        except InrkitError:
            return
        assert isinstance(pixels, np.ndarray) and pixels.ndim in (2, 3) and pixels.size > 0
        assert np.isfinite(to_channels(pixels, "rgb", {})).all()


@pytest.mark.slow
@FUZZ
@given(kind=st.sampled_from(KINDS), cut=st.floats(0.0, 1.0))
def test_truncated_images(tmp_path: Path, kind: str, cut: float):
    data = ENCODED[kind]
    path = tmp_path / f"x{SUFFIX.get(kind, '.' + kind)}"
    path.write_bytes(data[: int(len(data) * cut)])
    _check_image(path)


@pytest.mark.slow
@FUZZ
@given(kind=st.sampled_from(KINDS), flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_images(tmp_path: Path, kind: str, flips: list[tuple[float, int]]):
    data = bytearray(ENCODED[kind])
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    path = tmp_path / f"x{SUFFIX.get(kind, '.' + kind)}"
    path.write_bytes(bytes(data))
    _check_image(path)


@pytest.mark.slow
@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg", ".tif", ".gif", ".bmp", ".webp", ".ppm", ".xyz"]))
def test_random_bytes_as_an_image(tmp_path: Path, raw: bytes, suffix: str):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(raw)
    _check_image(path)


@FUZZ
@given(header=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"GIF89a", b"BM", b"\xff\xd8\xff", b"RIFF"]),
       raw=st.binary(max_size=200))
def test_image_magic_followed_by_junk(tmp_path: Path, header: bytes, raw: bytes):
    assume(raw)
    path = tmp_path / "x.img"
    path.write_bytes(header + raw)
    _check_image(path)


def test_every_valid_encoding_still_reads(tmp_path: Path):
    for kind, data in ENCODED.items():
        path = tmp_path / f"x{SUFFIX.get(kind, '.' + kind)}"
        path.write_bytes(data)
        pixels = read_pixels(path)
        assert pixels.shape[:2] == (12, 10), kind


# -- what inrkit reads back: its own JSON files and the .inrz header -------------------------------
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=20,
)
#: A record with the keys inrkit looks for, holding any JSON value: the reader's checks, not
#: JSON syntax, are what is fuzzed.
METRICS_KEYS = ["format_version", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "params", "items", "steps", "seconds", "history"]
POINT_KEYS = ["method", "setting", "bpp", "psnr", "images_sha256", "seed"]
FAILED_KEYS = ["format", "error", "entries", "time"]


def _records(keys: list[str]) -> st.SearchStrategy:
    return st.one_of(JSON, st.dictionaries(st.sampled_from(keys), JSON, max_size=len(keys)))


def _written(tmp: Path, name: str, value) -> Path:
    path = tmp / name
    path.write_text(json.dumps(value))
    return path


@FUZZ
@given(value=_records(METRICS_KEYS))
def test_metrics_json_read_back(value):
    from inrkit.results import RunMetrics

    with time_limit():
        try:
            RunMetrics.from_dict(value, "metrics.json")
        except InrkitError:
            pass


@FUZZ
@given(value=_records(POINT_KEYS))
def test_rd_points_read_back(value):
    from inrkit import files
    from inrkit.experiments.rd import POINT_FIELDS

    with tempfile.TemporaryDirectory() as tmp, time_limit():
        path = _written(Path(tmp), "p.json", value)
        try:
            point = files.read_record(path, POINT_FIELDS, "an rd point")
        except InrkitError:
            return
        assert isinstance(point["bpp"], (int, float)) and not isinstance(point["bpp"], bool)


@FUZZ
@given(value=_records(FAILED_KEYS), extra=st.booleans())
def test_failed_run_markers_read_back(value, extra: bool):
    """A marker is trusted only when it is inrkit's, and never vouches for a file it does not list."""
    from inrkit.runs import layout

    with tempfile.TemporaryDirectory() as tmp, time_limit():
        folder = Path(tmp)
        _written(folder, "failed.json", value)
        if extra:
            (folder / "thesis.tex").write_text("mine")
        foreign = layout.foreign_entries(folder)
        ours = isinstance(value, dict) and value.get("format") == layout.FAILED_FORMAT
        assert (foreign is None) == (not ours)
        listed = value.get("entries") if isinstance(value, dict) else None
        if foreign is not None and extra and "thesis.tex" not in (listed if isinstance(listed, list) else []):
            assert "thesis.tex" in foreign


@FUZZ
@given(value=_records(["format", "version", "kind", "base", "points"]))
def test_experiment_manifests_read_back(value):
    from inrkit.experiments import runner

    with tempfile.TemporaryDirectory() as tmp, time_limit():
        path = _written(Path(tmp), runner.EXPERIMENT_FILE, value)
        try:
            runner._read_manifest(path, "compare", value.get("base") if isinstance(value, dict) else None)
        except InrkitError:
            pass


@pytest.fixture(scope="module")
def inrz_header(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The header of a real, tiny .inrz file, to mutate."""
    import zlib

    import inrkit
    from inrkit.codec import inrz

    folder = tmp_path_factory.mktemp("inrz")
    iio.imwrite(folder / "a.png", make_image(8, 8))
    run = inrkit.fit({"model": {"width": 8, "layers": 3}, "train": {"steps": 1}}, data=[str(folder / "a.png")], out=folder / "run")
    path = inrkit.compress(run.run_dir, folder / "a.inrz", measure=False).path
    raw = path.read_bytes()
    _, _, length, _ = inrz._PREFIX.unpack(raw[: inrz._PREFIX.size])
    header = json.loads(zlib.decompress(raw[inrz._PREFIX.size : inrz._PREFIX.size + length]))
    return {"header": header, "sections": raw[inrz._PREFIX.size + length :]}


@FUZZ
@given(data=st.data())
def test_inrz_headers_with_valid_crcs(inrz_header: dict, data: st.DataObject):
    """A header rewritten with a valid CRC (the careful attacker's file): one InrkitError or a
    file whose declared tensors match its config's model; never another exception."""
    import copy
    import zlib

    from inrkit.codec import inrz
    from inrkit.runs.folder import CompressedRun

    header = copy.deepcopy(inrz_header["header"])
    key = data.draw(st.sampled_from(["metadata", "bits", "per_channel", "shared", "item", "sections", "format", "version"]))
    header[key] = data.draw(JSON) if data.draw(st.booleans()) else _mutated(header[key], data)
    packed = zlib.compress(json.dumps(header).encode())
    blob = inrz._PREFIX.pack(inrz.MAGIC, inrz.VERSION, len(packed), zlib.crc32(packed)) + packed + inrz_header["sections"]
    with tempfile.TemporaryDirectory() as tmp, time_limit():
        path = Path(tmp) / "x.inrz"
        path.write_bytes(blob)
        try:
            CompressedRun(path).file.check_sections()
        except InrkitError:
            pass


def _mutated(value, data: st.DataObject):
    """``value`` with one leaf replaced (a shape, a bit depth, a length, a name)."""
    if isinstance(value, list) and value:
        index = data.draw(st.integers(0, len(value) - 1))
        return [_mutated(v, data) if i == index else v for i, v in enumerate(value)]
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        return {k: (_mutated(v, data) if k == key else v) for k, v in value.items()}
    return data.draw(st.one_of(st.integers(-5, 2**40), st.text(max_size=8), st.none(), st.booleans()))

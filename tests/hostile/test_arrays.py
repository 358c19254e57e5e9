"""Array data sets: every bad ``.npy`` / ``.npz`` is one clear error naming the file, before any
large allocation, and nothing in one is ever unpickled.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``. The accepted layouts are tested in ``tests/builtins/test_array_data.py``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import cli, one_clean_error

from inrkit import arrays
from inrkit.errors import DataError
from inrkit.plugins import get_registry


def load(path: Path, **options):
    return get_registry().get("signal", "image")(options).load([str(path)])


def run(path: Path, *extra: str):
    return cli("run", "--data", path, "--steps", "1", "--width", "8", "--layers", "3", "--no-plots", "--no-progress",
               "--out", path.parent / "run", *extra)


@pytest.mark.parametrize(
    "array, fragments",
    [
        (np.zeros((8, 8), np.uint8), ["rank 2", "a[None]"]),
        (np.zeros((2, 2, 8, 8, 3), np.uint8), ["rank 5"]),
        (np.zeros((2, 3, 16, 16), np.uint8), ["(N, C, H, W)", "np.moveaxis(a, 1, -1)"]),
        (np.zeros((2, 16, 16, 7), np.uint8), ["7 channels"]),
        (np.zeros((16, 16, 3), np.uint8), ["one (H, W, C) image", "a[None]"]),
        (np.zeros((0, 8, 8, 3), np.uint8), ["holds no images"]),
        (np.zeros((3, 0, 8), np.uint8), ["empty"]),
        (np.zeros((2, 4, 4), np.int64), ["dtype int64", "astype(np.uint8)"]),
        (np.zeros((2, 4, 4), np.uint32), ["dtype uint32"]),
        (np.zeros((2, 4, 4), bool), ["dtype bool"]),
        (np.zeros((2, 4, 4), np.complex64), ["dtype complex64"]),
        (np.zeros((2, 4, 4), [("r", "u1"), ("g", "u1")]), ["structured"]),
        (np.array(["a", "b"] * 8).reshape(2, 2, 4), ["dtype <U1"]),
    ],
    ids=["rank2", "rank5", "nchw", "seven-channels", "one-hwc-image", "zero-items", "empty-images", "int64", "uint32",
         "bool", "complex", "structured", "strings"],
)
def test_bad_layouts_and_dtypes_are_one_clean_error(tmp_path: Path, array: np.ndarray, fragments: list[str]):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(DataError) as caught:
        load(path)
    for fragment in [str(path), *fragments]:
        assert fragment in str(caught.value)
    one_clean_error(run(path), str(path), *fragments)


class Evil:
    """Unpickling this writes a file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_object_arrays_and_pickles_are_never_unpickled(tmp_path: Path):
    marker = tmp_path / "pwned"
    objects = np.empty((2, 4, 4), dtype=object)
    objects[0, 0, 0] = Evil(marker)
    np.save(tmp_path / "objects.npy", objects, allow_pickle=True)
    one_clean_error(run(tmp_path / "objects.npy"), "objects.npy", "dtype object", "never unpickles")
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps(Evil(marker)))
    one_clean_error(run(tmp_path / "pickle.npy"), "pickle.npy", "not a NumPy .npy array", "pickle")
    np.savez(tmp_path / "objects.npz", x=objects, allow_pickle=True)
    one_clean_error(run(tmp_path / "objects.npz"), "objects.npz", "dtype object")
    assert not marker.exists()


def test_nan_and_infinite_floats_are_counted_with_the_first_item(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(arrays, "CHUNK_BYTES", 4 * 4 * 4)  # one image per chunk: the count spans chunks
    values = np.full((6, 4, 4), 0.5, np.float32)
    values[3, 0, :2] = np.nan
    values[5, 1, 1] = np.inf
    np.save(tmp_path / "nan.npy", values)
    one_clean_error(run(tmp_path / "nan.npy"), "nan.npy", "3 NaN or infinite", "first in item 3")


@pytest.mark.parametrize(
    "values, fragments",
    [
        (np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4) * 8, ["range from 0 to 248", "0-255", "a / 255"]),
        (np.full((2, 4, 4), -0.25), ["range from -0.25 to -0.25", "first outside [0, 1] in item 0"]),
    ],
    ids=["0-255", "negative"],
)
def test_floats_outside_the_unit_range_are_refused_with_the_range_seen(tmp_path: Path, values, fragments):
    np.save(tmp_path / "range.npy", values)
    one_clean_error(run(tmp_path / "range.npy"), "range.npy", *fragments)


def test_a_truncated_npy_is_refused_from_its_header(tmp_path: Path):
    np.save(tmp_path / "full.npy", np.zeros((100, 8, 8, 3), np.uint8))
    whole = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[:-1])
    one_clean_error(run(tmp_path / "cut.npy"), "cut.npy", "promises 19,200 bytes", "truncated")
    (tmp_path / "header.npy").write_bytes(whole[:40])
    one_clean_error(run(tmp_path / "header.npy"), "header.npy", "damaged .npy header")
    (tmp_path / "magic.npy").write_bytes(whole[:7])
    one_clean_error(run(tmp_path / "magic.npy"), "magic.npy")


def test_a_header_promising_a_huge_array_allocates_nothing(tmp_path: Path):
    header = io.BytesIO()  # the header alone, as a crafted file would be: it writes the magic string too
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 1000, 1000, 3)})
    path = tmp_path / "huge.npy"
    path.write_bytes(header.getvalue())
    one_clean_error(run(path), "huge.npy", "truncated")


def test_each_image_is_held_to_the_pixel_limit(tmp_path: Path, monkeypatch):
    np.save(tmp_path / "big.npy", np.zeros((2, 20, 30), np.uint8))
    monkeypatch.setenv("INRKIT_MAX_PIXELS", "500")
    one_clean_error(run(tmp_path / "big.npy"), "big.npy", "30x20 is 600 pixels", "INRKIT_MAX_PIXELS")


def test_a_result_larger_than_the_memory_is_refused_before_it_is_allocated(tmp_path: Path, monkeypatch):
    np.save(tmp_path / "set.npy", np.zeros((50, 8, 8, 3), np.uint8))
    monkeypatch.setattr(arrays, "available_memory", lambda: 1000)
    read = []
    chunks = arrays._chunks
    monkeypatch.setattr(arrays, "_chunks", lambda *a: read.append(a) or chunks(*a))
    one_clean_error(run(tmp_path / "set.npy"), "set.npy", "as float32", "INRKIT_MEMORY_CHECK=0")
    assert not read  # refused from the header: not a pixel was read
    monkeypatch.setenv("INRKIT_MEMORY_CHECK", "0")
    assert len(load(tmp_path / "set.npy")) == 50


def test_npz_keys_are_chosen_and_checked(tmp_path: Path):
    np.savez(tmp_path / "two.npz", train=np.zeros((2, 4, 4), np.uint8), test=np.zeros((1, 4, 4), np.uint8))
    one_clean_error(run(tmp_path / "two.npz"), "two.npz", "holds 2 arrays", "test, train", "--set signal.key=NAME")
    one_clean_error(run(tmp_path / "two.npz", "--set", "signal.key=valid"), "two.npz", "no array named 'valid'",
                    "its keys: test, train")
    np.savez(tmp_path / "many.npz", **{f"k{i:02d}\n": np.zeros((1, 2, 2), np.uint8) for i in range(30)})
    result = run(tmp_path / "many.npz")
    one_clean_error(result, "many.npz", "holds 30 arrays", "... and 10 more", "k00\\n")
    zipfile.ZipFile(tmp_path / "none.npz", "w").close()
    one_clean_error(run(tmp_path / "none.npz"), "none.npz", "holds no arrays")
    (tmp_path / "junk.npz").write_bytes(b"PK junk that is not a zip archive")
    one_clean_error(run(tmp_path / "junk.npz"), "junk.npz", "not a readable .npz")


def test_npz_members_are_checked_against_what_they_hold(tmp_path: Path):
    data = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    # a stored member cut short: the zip's sizes point past the end of the file
    np.savez(tmp_path / "stored.npz", x=data)
    whole = (tmp_path / "stored.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    one_clean_error(run(tmp_path / "cut.npz"), "cut.npz")
    # a stored member whose .npy header promises more than the member holds
    with zipfile.ZipFile(tmp_path / "short.npz", "w") as archive:
        buffer = io.BytesIO()
        np.save(buffer, data)
        archive.writestr("x.npy", buffer.getvalue()[:-100])
    one_clean_error(run(tmp_path / "short.npz"), "short.npz", "key 'x'", "truncated")
    # the same, compressed: found while the stream is read
    with zipfile.ZipFile(tmp_path / "cshort.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", buffer.getvalue()[:-100])
    one_clean_error(run(tmp_path / "cshort.npz"), "cshort.npz", "truncated")
    # a compressed member with flipped bytes: zlib or the CRC-32 says so
    np.savez_compressed(tmp_path / "c.npz", x=np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(64)
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    one_clean_error(run(tmp_path / "bad.npz"), "bad.npz")


def test_a_folder_without_images_or_classes_names_both(tmp_path: Path):
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "sub" / "notes.txt").write_text("x")
    one_clean_error(cli("run", "--data", tmp_path / "data", "--out", tmp_path / "o"),
                    "holds no images, neither directly nor in class subfolders")

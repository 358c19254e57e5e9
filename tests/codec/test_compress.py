"""Rate: quantisation, entropy coding, the .inrz container, ``inrkit compress`` and decoding from it."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import inrkit
from inrkit.codec import inrz
from inrkit.cli import main
from inrkit.runs.compress import Rate
from inrkit.codec.entropy import decode_block, encode_block
from inrkit.errors import CheckpointError, ConfigError
from inrkit.codec.quantize import best_step, levels, quantise

RUN = {"model": {"width": 16, "layers": 4}, "train": {"steps": 30, "device": "cpu"}}


# -- quantisation -----------------------------------------------------------------------------------
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(-4, 4, width=32)), st.integers(2, 16),
       st.booleans())
def test_quantised_values_are_codes_times_steps_and_within_half_a_step(values: np.ndarray, bits: int, per_channel: bool):
    q = quantise(values, bits, per_channel)
    assert q.codes.dtype == np.int32 and np.abs(q.codes).max(initial=0) <= levels(bits)
    assert q.steps.shape == ((values.shape[-1],) if per_channel else (1,)) and (q.steps > 0).all()
    steps = q.steps.reshape(1, -1) if per_channel else q.steps
    back = q.dequantise()
    np.testing.assert_array_equal(back, (q.codes * steps).astype(np.float32))
    inside = np.abs(values) <= levels(bits) * steps  # not clipped: rounding error only
    assert (np.abs(back - values)[inside] <= steps.max() / 2 * (1 + 1e-5) + 1e-7).all()


def test_the_step_minimises_the_error_better_than_max_over_levels():
    rng = np.random.default_rng(0)
    w = rng.laplace(0, 0.02, 20_000).astype(np.float32)  # bell-shaped, with a few far outliers
    naive = np.abs(w).max() / levels(4)
    chosen = best_step(w, 4)
    err = lambda s: float(np.mean((np.clip(np.rint(w / s), -7, 7) * s - w) ** 2))  # noqa: E731
    assert chosen < naive and err(chosen) < 0.5 * err(naive)


def test_complex_tensors_quantise_both_parts_with_one_step():
    rng = np.random.default_rng(1)
    w = (rng.normal(size=(5, 4)) + 1j * rng.normal(size=(5, 4))).astype(np.complex64)
    q = quantise(w, 10)
    assert q.codes.shape == (5, 4, 2) and np.iscomplexobj(q.dequantise())
    assert np.abs(q.dequantise() - w).max() < 4 * q.steps[0]


# -- entropy coding ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.one_of(
    arrays(np.int32, st.integers(0, 300), elements=st.integers(-127, 127)),
    arrays(np.int32, st.integers(1, 50), elements=st.integers(-32767, 32767)),
    arrays(np.int32, st.integers(1, 20), elements=st.just(5)),
))
def test_coded_integers_decode_bit_identically(codes: np.ndarray):
    block, _ = encode_block(codes)
    padded = b"xyz" + block + b"tail"
    decoded, end = decode_block(padded, 3, codes.size, "test")
    np.testing.assert_array_equal(decoded, codes)
    assert end == 3 + len(block)


def test_the_cheapest_model_wins_and_is_smaller_than_raw_codes():
    rng = np.random.default_rng(0)
    bell = np.rint(rng.laplace(0, 6, 50_000)).astype(np.int32)
    block, kind = encode_block(bell)
    _, counts = np.unique(bell, return_counts=True)
    entropy = float(-(counts / bell.size * np.log2(counts / bell.size)).sum())  # about 5 bits a value
    assert kind in ("laplace", "gaussian") and 8 * len(block) / bell.size < 1.02 * entropy
    two_peaks = np.concatenate([np.full(30_000, -40), np.full(30_000, 40), rng.integers(-40, 41, 200)]).astype(np.int32)
    block, kind = encode_block(two_peaks)
    assert kind == "histogram" and len(block) < two_peaks.size / 6
    assert encode_block(np.full(100, 3, np.int32))[1] == "constant"


def test_a_malformed_block_is_one_clear_error():
    block, _ = encode_block(np.arange(-50, 50, dtype=np.int32))
    with pytest.raises(CheckpointError, match="ends early"):
        decode_block(block[:-3], 0, 100, "f.inrz")
    with pytest.raises(CheckpointError, match="unknown entropy model"):
        decode_block(b"\x09" + block[1:], 0, 100, "f.inrz")


# -- the rate ---------------------------------------------------------------------------------------
def test_bits_per_pixel_by_hand():
    rate = Rate.of(inrz.Sizes(header=100, shared=200, items=[50, 50]), pixels=400)
    assert rate.bytes == 400 and rate.bpp == 8.0
    d = rate.to_dict()
    assert (d["bpp_header"], d["bpp_shared"], d["bpp_items"]) == (2.0, 4.0, 2.0)
    assert d["bpp_header"] + d["bpp_shared"] + d["bpp_items"] == d["bpp"]


# -- compress, the container, decode ----------------------------------------------------------------
@pytest.fixture
def finished(image_dir: Path, tmp_path: Path) -> Path:
    inrkit.fit(RUN, data=[str(image_dir)], out=tmp_path / "run")
    return tmp_path / "run"


def test_compress_writes_the_real_file_size_and_decodes_from_the_file_alone(finished: Path, tmp_path: Path):
    out = tmp_path / "r.inrz"
    result = inrkit.compress(finished, out, bits=12)
    assert result.rate.bytes == out.stat().st_size and result.rate.pixels == 4 * 24 * 24
    assert result.rate.bpp == pytest.approx(8 * out.stat().st_size / (4 * 24 * 24))
    assert result.psnr_before == pytest.approx(inrkit.load(finished).metrics.psnr_mean, abs=1e-4)
    assert abs(result.psnr_after - result.psnr_before) < 0.05  # 12 bits: nearly lossless
    coarse = inrkit.compress(finished, tmp_path / "c.inrz", bits=4)
    assert coarse.rate.bytes < result.rate.bytes and coarse.psnr_after < result.psnr_after
    moved = tmp_path / "elsewhere.inrz"
    moved.write_bytes(out.read_bytes())
    finished.rename(tmp_path / "gone")  # the run folder is not needed to decode
    run = inrkit.load(moved)
    assert isinstance(run, inrkit.runs.folder.CompressedRun) and run.item_names == [f"img{i}" for i in range(4)]
    image = run.decode("img2")
    assert image.shape == (24, 24, 3) and 0 <= image.min() and image.max() <= 1
    full = run.model()
    assert full.n_items == 4


def test_decoding_one_item_reads_the_shared_section_and_its_own_only(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    inrkit.compress(finished, tmp_path / "r.inrz", bits=8, measure=False)
    read: list[int] = []
    real = inrz.InrzFile._section

    def spy(self, index):  # type: ignore[no-untyped-def]
        read.append(index)
        return real(self, index)

    monkeypatch.setattr(inrz.InrzFile, "_section", spy)
    inrkit.decode(tmp_path / "r.inrz", 2)
    assert sorted(read) == [0, 3]  # shared, then item 2's section


def test_per_channel_steps_cost_more_and_keep_more(finished: Path, tmp_path: Path):
    tensor = inrkit.compress(finished, tmp_path / "t.inrz", bits=5)
    channel = inrkit.compress(finished, tmp_path / "c.inrz", bits=5, per_channel=True)
    assert channel.rate.bytes > tensor.rate.bytes and channel.psnr_after > tensor.psnr_after - 0.05


def _damaged(path: Path, tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    data = bytearray(path.read_bytes())
    out = tmp_path / "damaged.inrz"
    out.write_bytes(bytes(change(data)))
    return out


def test_truncated_corrupted_and_future_files_are_one_clear_error(finished: Path, tmp_path: Path):
    good = tmp_path / "r.inrz"
    inrkit.compress(finished, good, bits=8, measure=False)
    size = good.stat().st_size
    cases = {
        "is truncated": lambda d: d[: size - 10],
        "after its last section": lambda d: d + b"junk",
        "newer than this inrkit": lambda d: d[:4] + bytes([9]) + d[5:],
        "not an inrkit .inrz file": lambda d: b"ZZZZ" + d[4:],
        "header's checksum": lambda d: d[:20] + bytes([d[20] ^ 0xFF]) + d[21:],
        "section of item 3 does not match": lambda d: d[:-2] + bytes([d[-2] ^ 1]) + d[-1:],
    }
    for message, change in cases.items():
        bad = _damaged(good, tmp_path, change)
        with pytest.raises(CheckpointError, match=message):
            inrkit.load(bad).decode(3)
        result = CliRunner().invoke(main, ["decode", str(bad), "--item", "3", "-o", str(tmp_path / "x.png")])
        assert result.exit_code != 0 and "Traceback" not in result.output and message.split()[0] in result.output


def test_a_hostile_header_cannot_size_an_allocation(tmp_path: Path):
    header = {"format": "inrkit-inrz", "version": 1, "metadata": {}, "bits": 8, "per_channel": False, "shared": [
        {"key": "shared.w", "shape": [1 << 30, 1 << 30], "dtype": "float32", "mode": "q"}], "item": [], "sections": [[0, 0]]}
    packed = zlib.compress(json.dumps(header).encode())
    path = tmp_path / "h.inrz"
    path.write_bytes(struct.pack("<4sB3xII", b"INRZ", 1, len(packed), zlib.crc32(packed)) + packed)
    with pytest.raises(CheckpointError, match="implausible shape"):
        inrz.InrzFile(path)


def test_compress_cli_reports_rate_and_refuses_bad_requests(finished: Path, tmp_path: Path):
    out = tmp_path / "r.inrz"
    result = CliRunner().invoke(main, ["compress", str(finished), "-o", str(out), "--bits", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["bytes"] == out.stat().st_size and report["bits"] == 8 and report["psnr_after"] is not None
    assert report["header_bytes"] + report["shared_bytes"] + sum(report["item_bytes"]) == report["bytes"]
    table = CliRunner().invoke(main, ["compress", str(finished), "-o", str(tmp_path / "s.inrz")])
    assert table.exit_code == 0 and "bpp" in table.output and "before quantisation" in table.output
    for args, message in [
        (["-o", str(out)], "already exists"),
        (["-o", str(tmp_path / "r.png")], "ending in .inrz"),
        (["-o", str(tmp_path / "b.inrz"), "--bits", "1"], "1 is not in the range"),
    ]:
        bad = CliRunner().invoke(main, ["compress", str(finished), *args])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output
    decoded = CliRunner().invoke(main, ["decode", str(out), "--item", "img1", "-o", str(tmp_path / "img1.png")])
    assert decoded.exit_code == 0 and (tmp_path / "img1.png").is_file()
    with pytest.raises(ConfigError, match="bits must be"):
        inrkit.compress(finished, tmp_path / "z.inrz", bits=40)


def test_the_first_layer_and_biases_get_the_fine_bits(finished: Path, tmp_path: Path):
    from inrkit.runs.compress import tensor_bits

    model = inrkit.load(finished).model()
    allocation = tensor_bits(model, 6, 10)
    assert allocation["items.first.weight"] == allocation["items.first.bias"] == 10
    assert allocation["shared.hidden2.bias"] == allocation["items.projection.bias"] == allocation["items.last.bias"] == 10
    assert allocation["items.projection.weight"] == allocation["shared.hidden2.weight"] == allocation["items.last.weight"] == 6
    fine = inrkit.compress(finished, tmp_path / "fine.inrz", bits=5)
    flat = inrkit.compress(finished, tmp_path / "flat.inrz", bits=5, fine_bits=5)
    assert fine.fine_bits == 9 and flat.fine_bits == 5
    assert fine.psnr_after > flat.psnr_after and fine.rate.bytes < 1.25 * flat.rate.bytes
    layout = {t.key: t.bits for t in inrz.InrzFile(tmp_path / "fine.inrz").header.item}
    assert layout == {"first.weight": 9, "first.bias": 9, "projection.weight": 5, "projection.bias": 9, "last.weight": 5, "last.bias": 9}
    assert inrkit.compress(finished, tmp_path / "top.inrz", bits=14, measure=False).fine_bits == 16


def test_compress_cli_takes_fine_bits(finished: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["compress", str(finished), "-o", str(tmp_path / "f.inrz"), "--bits", "6", "--fine-bits", "12",
                                       "--no-measure", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["bits"] == 6 and report["fine_bits"] == 12 and report["psnr_after"] is None
    bad = CliRunner().invoke(main, ["compress", str(finished), "-o", str(tmp_path / "g.inrz"), "--fine-bits", "17"])
    assert bad.exit_code == 2 and "17 is not in the range" in bad.output


def test_fixed_steps_are_used_as_given():
    values = np.array([[0.04, -0.26], [0.31, 0.0]], dtype=np.float32)
    q = quantise(values, 8, steps=np.array([0.1], np.float32))
    np.testing.assert_array_equal(q.codes, [[0, -3], [3, 0]])
    assert q.steps.tolist() == [np.float32(0.1)]


def test_quantisation_aware_fine_tuning_recovers_what_rounding_lost(finished: Path, tmp_path: Path):
    ptq = inrkit.compress(finished, tmp_path / "p.inrz", bits=3, fine_bits=6)
    qat = inrkit.compress(finished, tmp_path / "q.inrz", bits=3, fine_bits=6, qat_steps=40, qat_lr=1e-3)
    assert qat.qat_steps == 40 and qat.psnr_before == pytest.approx(ptq.psnr_before)
    assert qat.psnr_after > ptq.psnr_after + 0.5
    assert qat.rate.bytes < 1.3 * ptq.rate.bytes  # the same grid: about the same rate
    assert 0 < qat.qat_kept_step <= 40 and qat.to_dict()["qat_kept_step"] == qat.qat_kept_step
    report = CliRunner().invoke(main, ["compress", str(finished), "-o", str(tmp_path / "c.inrz"), "--bits", "4", "--qat-steps", "5"])
    assert report.exit_code == 0 and "after 5 steps of quantisation-aware fine-tuning, the weights of step" in report.output
    with pytest.raises(ConfigError, match="qat_steps"):
        inrkit.compress(finished, tmp_path / "z.inrz", qat_steps=-1)


def test_fine_tuning_keeps_plain_quantisation_when_every_step_is_worse(finished: Path, tmp_path: Path):
    """A learning rate that wrecks the weights: the start (post-training quantisation) is kept,
    and the file decodes to exactly the plain file's model."""
    ptq = inrkit.compress(finished, tmp_path / "p.inrz", bits=4)
    wrecked = inrkit.compress(finished, tmp_path / "w.inrz", bits=4, qat_steps=4, qat_lr=50.0)
    assert wrecked.qat_kept_step == 0
    assert wrecked.psnr_after == pytest.approx(ptq.psnr_after, abs=1e-6)
    plain, tuned = inrkit.load(tmp_path / "p.inrz").model().state_dict(), inrkit.load(tmp_path / "w.inrz").model().state_dict()
    for key, value in plain.items():
        torch.testing.assert_close(tuned[key], value, rtol=0, atol=0)


def test_fine_tuning_phases_and_schedule(finished: Path):
    """The noise phase's steps are not measured; every straight-through step is, and the loss kept
    is the least of them and of the start."""
    from inrkit.codec import qat
    from inrkit.runs.compress import tensor_bits
    from inrkit.config import ResolvedRun
    from inrkit.runs.fit import load_items

    run = inrkit.load(finished)
    model, resolved = run.model(), ResolvedRun(run.config)

    arrays = [resolved.signal.train_view(it) for it in load_items(resolved)]
    bits = tensor_bits(model, 4, 8)
    tuning = qat.finetune(model, arrays, bits, qat.fixed_steps(model, bits, False), n_steps=10, lr=1e-4, device=torch.device("cpu"))
    assert len(tuning.losses) == 10 - int(qat.NOISE_FRACTION * 10) + 1
    assert tuning.kept_loss == min([tuning.start_loss, *tuning.losses])
    assert all(p.grad is None for p in model.parameters())


def test_fine_tuning_needs_the_runs_data(finished: Path, tmp_path: Path, image_dir: Path):
    for f in image_dir.iterdir():
        f.unlink()
    with pytest.raises(ConfigError, match="needs the run's data"):
        inrkit.compress(finished, tmp_path / "q.inrz", qat_steps=3)
    plain = inrkit.compress(finished, tmp_path / "p.inrz")
    assert plain.psnr_after is None and "quality not measured" in plain.note


def test_items_encoded_against_a_run_report_both_rates(finished: Path, tmp_path: Path, image_dir: Path):
    inrkit.encode(finished, [str(image_dir / "img0.png")], out=tmp_path / "enc", train={"steps": 5})
    result = inrkit.compress(tmp_path / "enc", tmp_path / "e.inrz", measure=False)
    d = result.to_dict()
    assert d["encoded_from"] == str(finished)
    assert d["bpp_known_decoder"] == pytest.approx(d["bpp_header"] + d["bpp_items"]) and d["bpp_known_decoder"] < d["bpp"]
    from inrkit.runs.compress import summary

    assert any("known decoder" in line and str(finished) in line for line in summary(result))


def test_hostile_files_fail_cleanly(finished: Path, tmp_path: Path):
    """Review findings: shapes that disagree with the config's model, absurd section lengths, a
    code range no 16-bit quantiser makes, values too small for a step."""
    good = tmp_path / "r.inrz"
    inrkit.compress(finished, good, bits=8, measure=False)
    f = inrz.InrzFile(good)
    header = f.header.model_dump()
    header["item"][0]["shape"] = [4000, 4000]
    packed = zlib.compress(json.dumps(header).encode())
    body = good.read_bytes()[f.header_bytes:]
    bad = tmp_path / "shape.inrz"
    bad.write_bytes(struct.pack("<4sB3xII", b"INRZ", 1, len(packed), zlib.crc32(packed)) + packed + body)
    with pytest.raises(CheckpointError, match="do not match the model its config builds"):
        inrkit.load(bad)
    header = f.header.model_dump()
    header["sections"] = [[2**64, 0]] + header["sections"][1:]
    packed = zlib.compress(json.dumps(header).encode())
    bad.write_bytes(struct.pack("<4sB3xII", b"INRZ", 1, len(packed), zlib.crc32(packed)) + packed + body)
    with pytest.raises(CheckpointError, match="unreadable header"):
        inrz.InrzFile(bad)
    huge_range = struct.pack("<Bii", 1, -(2**23), 2**23) + struct.pack("<ff", 0.0, 1.0) + struct.pack("<I", 1) + b"\0\0\0\0"
    with pytest.raises(CheckpointError, match="code range"):
        decode_block(huge_range, 0, 10, "f")
    q = quantise(np.array([1e-42, -5e-43], dtype=np.float32), 16)
    assert (q.steps > 0).all()


def test_a_model_without_per_item_tensors_and_the_qat_refusals(image_dir: Path, tmp_path: Path):
    inrkit.fit({**RUN, "sharing": {"name": "id"}}, data=[str(image_dir)], out=tmp_path / "id")
    single = inrkit.compress(tmp_path / "id", tmp_path / "id.inrz", bits=8)
    assert single.rate.item_bytes == [0, 0, 0, 0] and single.psnr_after is not None
    assert inrkit.load(tmp_path / "id.inrz").decode(1).shape == (24, 24, 3)
    inrkit.fit({**RUN, "sharing": {"name": "coinpp"}, "train": {**RUN["train"], "steps": 3}}, data=[str(image_dir)], out=tmp_path / "c")
    with pytest.raises(ConfigError, match="fits items.latent.codes itself"):
        inrkit.compress(tmp_path / "c", tmp_path / "c.inrz", qat_steps=2)


def test_fine_tuning_an_encoded_run_keeps_its_shared_layers(finished: Path, tmp_path: Path, image_dir: Path):
    inrkit.encode(finished, [str(image_dir / "img1.png")], out=tmp_path / "enc", train={"steps": 5})
    plain = inrkit.compress(tmp_path / "enc", tmp_path / "p.inrz", measure=False)
    tuned = inrkit.compress(tmp_path / "enc", tmp_path / "t.inrz", qat_steps=3, measure=False)
    shared = lambda path: inrz.InrzFile(path).shared_state()  # noqa: E731
    for key, value in shared(tmp_path / "p.inrz").items():
        torch.testing.assert_close(shared(tmp_path / "t.inrz")[key], value, rtol=0, atol=0)
    assert plain.rate.shared_bytes == tuned.rate.shared_bytes

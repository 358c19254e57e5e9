"""Codec baselines and ``inrkit rd`` on tiny images: real file sizes, resumable points, deltas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inrkit.experiments import rd as rate_distortion
from inrkit.cli import main
from inrkit.experiments.baselines import check_codecs, codec_point, encode_decode
from inrkit.images import to_pixels as to_bytes
from inrkit.errors import ConfigError


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    image = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 3) * x + rng.uniform(0, 2) * y + c)) for c in range(3)], -1)
    return (np.round(image * 255) / 255).astype(np.float32)


@pytest.mark.parametrize("codec", ["jpeg", "webp", "avif"])
def test_a_codec_point_counts_the_real_bytes_and_scores_like_a_run(codec: str):
    images = [_smooth(24, 32, 0), _smooth(20, 20, 1)]
    low, high = codec_point(images, codec, 10), codec_point(images, codec, 90)
    for point in (low, high):
        sizes = [encode_decode(to_bytes(im), codec, point["quality"])[0] for im in images]
        assert point["item_bytes"] == sizes and point["bytes"] == sum(sizes)
        assert point["pixels"] == 24 * 32 + 20 * 20 and point["bpp"] == pytest.approx(8 * sum(sizes) / (24 * 32 + 20 * 20))
    assert high["bytes"] > low["bytes"] and high["psnr"] > low["psnr"]
    _, back = encode_decode(to_bytes(images[0]), codec, 90)
    assert back.shape == images[0].shape and back.dtype == np.float32


def test_unknown_codecs_are_refused_by_name():
    with pytest.raises(ConfigError, match="unknown codec 'bpg'"):
        check_codecs(["jpeg", "bpg"])


def test_pareto_fronts_and_deltas():
    pts = [{"bpp": b, "psnr": p} for b, p in [(1, 30), (2, 29), (3, 33), (4, 35)]]
    assert [p["bpp"] for p in rate_distortion.pareto(pts)] == [1, 3, 4]
    anchor = [{"bpp": b, "psnr": 20 + 5 * np.log2(b)} for b in (0.5, 1, 2, 4)]
    better = [{"bpp": p["bpp"], "psnr": p["psnr"] + 1.0} for p in anchor]
    d = rate_distortion.bd_delta(anchor, better)
    assert d["bd_psnr"] == pytest.approx(1.0, abs=0.05) and d["bd_rate"] < 0
    assert rate_distortion.matching_rate(anchor, better) == 0.5
    assert rate_distortion.matching_rate(anchor, [{"bpp": p["bpp"], "psnr": p["psnr"] - 1} for p in anchor]) is None
    short = rate_distortion.bd_delta(anchor, better[:1])
    assert short["bd_psnr"] is None and short["bd_rate"] is None
    assert d["rate_overlap"] == pytest.approx(1.0) and d["psnr_overlap"] > 0.8
    sliver = [{"bpp": b, "psnr": 20 + 5 * np.log2(b) + 1} for b in (3.5, 4, 8, 16)]  # overlaps on 3.5..4 bpp only
    far = rate_distortion.bd_delta(anchor, sliver)
    assert far["bd_psnr"] is None and far["rate_overlap"] < rate_distortion.MIN_OVERLAP


def test_rd_measures_every_point_once_and_resumes(image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "rd"
    args = ["rd", "--data", str(image_dir), "--sharing", "minr,separate", "--width", "8,16", "--bits", "6,8",
            "--codecs", "jpeg,webp", "--steps", "20", "--layers", "3", "--device", "cpu", "--out", str(out), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    inr = [p for p in summary["points"] if p["method"] in ("minr", "separate")]
    assert len(inr) == 8 and {p["setting"] for p in inr} == {"w8 b6", "w8 b8", "w16 b6", "w16 b8"}
    for p in inr:
        name = f"{p['method']}-w{p['width']}-b{p['bits']}"
        assert p["bytes"] == (out / "inrz" / f"{name}.inrz").stat().st_size
        assert p["bpp_header"] + p["bpp_shared"] + p["bpp_items"] == pytest.approx(p["bpp"])
    assert len([p for p in summary["points"] if p["method"] == "jpeg"]) == 8
    assert set(summary["deltas"]) == {"minr", "separate"} and summary["anchor"] == "jpeg"
    table = (out / "rd.md").read_text()
    assert "| minr | w16 b8 |" in table and "Bjøntegaard deltas against jpeg" in table
    assert (out / "rd.png").stat().st_size > 1000
    # the same command again measures nothing: every point is read back
    from inrkit.experiments import baselines as codecs
    from inrkit.runs import compress as compression

    monkeypatch.setattr(codecs, "codec_point", lambda *a, **k: pytest.fail("a codec point was measured again"))
    monkeypatch.setattr(rate_distortion, "codec_point", lambda *a, **k: pytest.fail("a codec point was measured again"))
    monkeypatch.setattr(rate_distortion, "compress", lambda *a, **k: pytest.fail("a fit was compressed again"))
    assert compression  # imported for the patch's sake
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["points"] == summary["points"]


def test_rd_refuses_bad_requests_before_fitting(image_dir: Path, tmp_path: Path):
    base = ["rd", "--data", str(image_dir), "--out", str(tmp_path / "x")]
    for extra, message in [
        (["--sharing", "minr", "--bits", "1"], "--bits must be a whole number from 2 to 16"),
        (["--codecs", "gif"], "unknown codec 'gif'"),
        (["--sharing", "minr", "--width", "8,x"], "expected whole numbers"),
        (["--codecs", "", "--sharing", ""], "nothing to measure"),
    ]:
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "x" / "runs").exists()


def _tiny_minr_rd(image_dir: Path, out: Path, *extra: str) -> dict:
    """``rd`` of MINR at widths 8 and 12, 6 bits, against JPEG, on the tiny images."""
    result = CliRunner().invoke(main, ["rd", "--data", str(image_dir), "--sharing", "minr", "--width", "8,12", "--bits", "6",
                                       *extra, "--codecs", "jpeg", "--steps", "10", "--layers", "3", "--device", "cpu",
                                       "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_rd_with_fine_tuning_adds_a_qat_curve(image_dir: Path, tmp_path: Path):
    out = tmp_path / "rd"
    summary = _tiny_minr_rd(image_dir, out, "--qat-steps", "3")
    methods = {p["method"] for p in summary["points"]}
    assert methods == {"minr", "minr+qat", "jpeg"}
    qat = [p for p in summary["points"] if p["method"] == "minr+qat"]
    assert len(qat) == 2 and all(p["qat_steps"] == 3 for p in qat) and (out / "inrz" / "minr-w8-b6-qat3.inrz").is_file()
    assert all(0 <= p["qat_kept_step"] <= 3 for p in qat)
    assert set(summary["deltas"]) == {"minr", "minr+qat"}


def test_rd_refuses_an_out_measured_on_other_images(image_dir: Path, tmp_path: Path):
    out = tmp_path / "rd"
    first = CliRunner().invoke(main, ["rd", "--data", str(image_dir), "--codecs", "jpeg", "--out", str(out)])
    assert first.exit_code == 0, first.output
    (image_dir / "img0.png").unlink()
    again = CliRunner().invoke(main, ["rd", "--data", str(image_dir), "--codecs", "jpeg,webp", "--out", str(out)])
    assert again.exit_code == 2 and "measured on other images" in again.output
    assert not (out / "points" / "webp-q5.json").exists()


def test_settings_are_means_over_seeds_and_deltas_come_per_seed():
    anchor = [{"method": "jpeg", "setting": f"q{q}", "bpp": b, "psnr": 20 + 5 * np.log2(b)} for q, b in [(1, 0.5), (2, 1), (3, 2), (4, 4)]]
    shifts = {0: 0.5, 1: 1.5}  # each seed's curve: the anchor's, shifted up by this many dB
    test = [{"method": "m", "setting": f"s{i}", "seed": seed, "bpp": p["bpp"] * (1 + seed / 100), "psnr": p["psnr"] + shift, "ssim": 0.5}
            for seed, shift in shifts.items() for i, p in enumerate(anchor)]
    means = rate_distortion.settings(test)
    assert len(means) == 4 and all(p["seeds"] == 2 for p in means)
    first = next(p for p in means if p["setting"] == "s0")
    assert first["bpp"] == pytest.approx(0.5 * 1.005) and first["psnr"] == pytest.approx(anchor[0]["psnr"] + 1.0)
    assert first["psnr_interval"] == pytest.approx(12.706 * 0.5, rel=1e-3)  # t(0.975, 1) x stdev / sqrt(2)
    assert first["ssim"] == pytest.approx(0.5)
    summary = rate_distortion._summary({f"{p['setting']}-{p.get('seed')}-{p['method']}": p for p in anchor + test}, ["m"])
    spread = summary["deltas"]["m"]["bd_psnr_seeds"]
    assert spread["n"] == 2 and spread["mean"] == pytest.approx(1.0, abs=0.1) and spread["half_width"] > 1.0
    assert summary["deltas"]["m"]["bd_psnr"] == pytest.approx(1.0, abs=0.1)  # the mean curve's own delta
    perfect = rate_distortion.settings([{"method": "png", "setting": "lossless", "bpp": 9.0, "psnr": float("inf")}])
    assert perfect[0]["psnr"] == float("inf") and perfect[0]["psnr_interval"] is None
    unseeded = rate_distortion._summary({p["setting"]: p for p in anchor}, [])
    assert [p["seeds"] for p in unseeded["settings"]] == [1, 1, 1, 1] and unseeded["settings"][0]["psnr_interval"] is None


def test_rd_with_seeds_fits_each_setting_per_seed(image_dir: Path, tmp_path: Path):
    out = tmp_path / "rd"
    summary = _tiny_minr_rd(image_dir, out, "--seeds", "0,1")
    minr = [p for p in summary["points"] if p["method"] == "minr"]
    assert sorted((p["width"], p["seed"]) for p in minr) == [(8, 0), (8, 1), (12, 0), (12, 1)]
    assert (out / "inrz" / "minr-w12-s1-b6.inrz").is_file() and (out / "runs" / "minr-w12" / "seed-1").is_dir()
    assert len({p["psnr"] for p in minr}) == 4  # the seeds differ
    means = [p for p in summary["settings"] if p["method"] == "minr"]
    assert all(p["seeds"] == 2 and p["psnr_interval"] is not None for p in means)
    table = (out / "rd.md").read_text()
    assert "| minr | w8 b6 |" in table and " ± " in table and "| 2 |" in table and "over seeds" in table
    bad = CliRunner().invoke(main, ["rd", "--data", str(image_dir), "--sharing", "minr", "--seeds", "1,1", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "listed twice" in bad.output

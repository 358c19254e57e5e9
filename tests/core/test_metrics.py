"""The metrics papers report: MS-SSIM where it is defined, and both ways of averaging PSNR over a set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from conftest import make_image
from inrkit.cli import main
from inrkit.cli.experiments import METRIC_CHOICES
from inrkit.errors import CheckpointError, ConfigError
from inrkit.experiments import compare as comparing
from inrkit.experiments import rd, sweep
from inrkit.metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr, psnr_from_mse, psnr_of_mean_mse
from inrkit.results import METRICS_FORMAT_VERSION, RunMetrics


def _pair(side: int, noise: float, channels: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    target = make_image(side, side + 7, seed=seed, channels=channels).astype(np.float32) / 255
    noisy = np.clip(target + np.random.default_rng(seed).normal(0, noise, target.shape), 0, 1).astype(np.float32)
    return noisy, target


# -- MS-SSIM ---------------------------------------------------------------------------------------

def test_ms_ssim_is_one_for_a_perfect_match_and_falls_with_noise():
    _, target = _pair(MS_SSIM_MIN_SIDE, 0.0)
    assert ms_ssim(target, target) == pytest.approx(1.0, abs=1e-6)
    values = [ms_ssim(*_pair(MS_SSIM_MIN_SIDE, noise)) for noise in (0.01, 0.05, 0.2)]
    assert all(v is not None and 0.0 < v < 1.0 for v in values)
    assert values[0] > values[1] > values[2]


def test_ms_ssim_is_not_applicable_below_161_pixels_or_off_images():
    assert MS_SSIM_MIN_SIDE == (11 - 1) * 2**4 + 1
    assert ms_ssim(*_pair(MS_SSIM_MIN_SIDE - 1, 0.05)) is None  # the shorter side decides
    assert ms_ssim(*_pair(MS_SSIM_MIN_SIDE, 0.05)) is not None
    line = np.random.default_rng(0).random((400, 1), dtype=np.float32)
    assert ms_ssim(line, line) is None  # a 1-D signal
    clip = np.random.default_rng(0).random((2, 200, 200, 3), dtype=np.float32)
    assert ms_ssim(clip, clip) is None  # a video item


def test_ms_ssim_is_pytorch_msssim_per_channel_on_the_hwc_image():
    """The wiring: channels last to NCHW, data range 1, the mean over channels of each channel's value."""
    from pytorch_msssim import ms_ssim as reference

    recon, target = _pair(200, 0.05)
    per_channel = [
        float(reference(torch.from_numpy(recon[None, None, ..., c]).double(), torch.from_numpy(target[None, None, ..., c]).double(),
                        data_range=1.0))
        for c in range(3)
    ]
    assert ms_ssim(recon, target) == pytest.approx(np.mean(per_channel), abs=1e-6)  # computed in float32
    gray, gray_target = _pair(200, 0.05, channels=1)
    assert ms_ssim(gray, gray_target) is not None


def test_ms_ssim_clamps_the_reconstruction_like_psnr():
    recon, target = _pair(180, 0.05)
    overshoot = recon.copy()
    overshoot[recon > 0.99] = 1.5  # outputs beyond [0, 1] score as if clamped
    assert ms_ssim(overshoot, target) == pytest.approx(ms_ssim(np.clip(overshoot, 0, 1), target), abs=1e-7)


# -- the two PSNR averages -------------------------------------------------------------------------

def test_psnr_of_mean_mse_is_the_psnr_of_the_items_mean_squared_error():
    pairs = [_pair(24, noise, seed=i) for i, noise in enumerate((0.01, 0.05, 0.1))]
    mses = [float(np.mean((np.clip(r, 0, 1).astype(np.float64) - t) ** 2)) for r, t in pairs]
    psnrs = [psnr(r, t) for r, t in pairs]
    assert psnr_of_mean_mse(psnrs) == pytest.approx(psnr_from_mse(float(np.mean(mses))), abs=1e-9)
    assert psnr_of_mean_mse(psnrs) < float(np.mean(psnrs))  # a spread of PSNRs pulls it under the mean


@given(st.lists(st.floats(min_value=-20, max_value=120), min_size=1, max_size=30))
def test_psnr_of_mean_mse_never_exceeds_the_mean_psnr(psnrs: list[float]):
    pooled = psnr_of_mean_mse(psnrs)
    assert pooled is not None and pooled <= float(np.mean(psnrs)) + 1e-9
    assert min(psnrs) - 1e-9 <= pooled <= max(psnrs) + 1e-9


def test_psnr_of_mean_mse_edge_cases():
    assert psnr_of_mean_mse([]) is None and psnr_of_mean_mse([None, None]) is None
    assert psnr_of_mean_mse([30.0, None]) == pytest.approx(30.0)  # an item without a PSNR is left out
    assert psnr_of_mean_mse([30.0, math.inf]) == pytest.approx(30.0 + 10 * math.log10(2))  # a perfect fit: error 0
    assert psnr_of_mean_mse([math.inf]) == math.inf


# -- metrics.json ----------------------------------------------------------------------------------

def _metrics_v1() -> dict:
    return {
        "psnr_mean": 25.0, "psnr_std": 5.0, "ssim_mean": 0.5, "ssim_std": 0.1,
        "params": {"total": 10, "shared": 4, "per_item": 3},
        "items": [{"name": "a", "shape": [8, 8], "channels": 3, "psnr": 20.0, "ssim": 0.4},
                  {"name": "b", "shape": [8, 8], "channels": 3, "psnr": 30.0, "ssim": 0.6}],
        "steps": 2, "seconds": 1.0, "lr": 1e-3, "device": "cpu", "activation": "siren", "sharing": "minr",
        "signal": "image", "inrkit_version": "0.1.0", "history": [],
    }


def test_a_version_1_metrics_file_reads_with_the_pooled_psnr_from_its_items():
    metrics = RunMetrics.from_dict(_metrics_v1())
    assert metrics.psnr_of_mean_mse == pytest.approx(psnr_from_mse((1e-2 + 1e-3) / 2))
    assert metrics.summary("ms_ssim") == (None, None) and metrics.items[0].ms_ssim is None
    assert metrics.metric_names()[:3] == ["psnr", "ssim", "ms_ssim"]


def test_metrics_json_round_trips_both_averages_and_ms_ssim():
    data = _metrics_v1() | {"format_version": METRICS_FORMAT_VERSION, "psnr_of_mean_mse": 24.1, "ms_ssim_mean": 0.9,
                            "ms_ssim_std": 0.01}
    data["items"][0]["ms_ssim"] = 0.89
    again = RunMetrics.from_dict(json.loads(json.dumps(RunMetrics.from_dict(data).to_dict())))
    assert again.psnr_of_mean_mse == 24.1 and again.summary("ms_ssim") == (0.9, 0.01) and again.items[0].ms_ssim == 0.89
    with pytest.raises(CheckpointError, match="upgrade inrkit"):
        RunMetrics.from_dict(data | {"format_version": METRICS_FORMAT_VERSION + 1})


def test_a_run_reports_both_averages_and_ms_ssim_where_it_is_defined(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    iio.imwrite(folder / "big.png", make_image(MS_SSIM_MIN_SIDE, 170, seed=1))
    iio.imwrite(folder / "small.png", make_image(32, 32, seed=2))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--data", str(folder), "--width", "8", "--layers", "3", "--steps", "3",
                                       "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    by_name = {item["name"]: item for item in metrics["items"]}
    assert by_name["big"]["ms_ssim"] is not None and 0 < by_name["big"]["ms_ssim"] <= 1
    assert by_name["small"]["ms_ssim"] is None  # not applicable, never a number
    assert metrics["ms_ssim_mean"] == pytest.approx(by_name["big"]["ms_ssim"])
    assert metrics["psnr_of_mean_mse"] == pytest.approx(psnr_of_mean_mse([i["psnr"] for i in metrics["items"]]))
    assert metrics["psnr_of_mean_mse"] <= metrics["psnr_mean"]
    assert "MS-SSIM" in result.output and "PSNR of the mean MSE" in result.output
    table = [line for line in result.output.splitlines() if line.startswith("small")]
    assert table and table[0].split()[-1] == "n/a"


def test_the_run_table_leaves_out_ms_ssim_when_no_item_has_it(image_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["run", "--data", str(image_dir), "--width", "8", "--layers", "3", "--steps", "2",
                                       "--no-progress", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0]
    assert "SSIM" in header and "MS-SSIM" not in header
    assert "MS-SSIM: n/a (defined for images of at least 161 pixels on the shorter side)" in result.output


# -- tables and --metric ---------------------------------------------------------------------------

def test_metric_choices_are_one_list():
    assert METRIC_CHOICES == list(comparing.METRICS)
    assert comparing.metric_key("ms-ssim") == "ms_ssim" == comparing.metric_key("ms_ssim")
    with pytest.raises(ConfigError, match="--metric 'lpips'"):
        comparing.metric_key("lpips")


def test_compare_tables_give_both_psnr_averages_and_ms_ssim(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(2):
        iio.imwrite(folder / f"p{i}.png", make_image(MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE, seed=i))
    base = {"data": [str(folder)], "model": {"width": 8, "layers": 3}, "train": {"steps": 3}}
    rows = comparing.compare(base, comparing.sharing_variants(["separate", "minr"]), tmp_path / "c", seeds=[0, 1],
                             metric="ms-ssim")
    assert all(r["psnr_of_mean_mse"] is not None and r["psnr_of_mean_mse"] <= r["psnr_mean"] + 1e-9 for r in rows)
    assert all(r["ms_ssim_mean"] is not None for r in rows)
    assert rows[1]["paired_metric"] == "ms_ssim" and abs(rows[1]["vs_reference"]["mean"]) < 1
    table = (tmp_path / "c" / "table.md").read_text()
    assert "PSNR of mean MSE (dB)" in table and "MS-SSIM" in table and "(MS-SSIM, paired)" in table
    _, ranked = sweep.sweep(base, [sweep.parse_axis("lr=1e-4,3e-3")], tmp_path / "s", seeds=[0], metric="ms-ssim")
    assert ranked[0]["metric"] == "ms_ssim" and "MS-SSIM, 95% CI" in (tmp_path / "s" / "sweep.md").read_text()


def test_compare_on_small_images_says_why_ms_ssim_is_n_a():
    row = {"method": "minr", "params": 900, "psnr_mean": 20.0, "psnr_std": 1.0, "psnr_of_mean_mse": 19.5,
           "ssim_mean": 0.5, "ssim_std": 0.1, "ms_ssim_mean": None, "ms_ssim_std": None, "seconds": 1.0, "seeds": [0]}
    table = comparing.markdown_table([row])
    assert "| 19.50 |" in table and "MS-SSIM is n/a where an image's shorter side is under 161 pixels" in table


def test_rd_settings_average_every_score_over_seeds():
    points = [
        {"method": "minr", "setting": "w8 b8", "bpp": 1.0, "psnr": 30.0, "psnr_of_mean_mse": 29.0, "ssim": 0.9, "ms_ssim": 0.95},
        {"method": "minr", "setting": "w8 b8", "bpp": 2.0, "psnr": 32.0, "psnr_of_mean_mse": 31.0, "ssim": 0.8, "ms_ssim": 0.97},
    ]
    (mean,) = rd.settings(points)
    assert mean["psnr_of_mean_mse"] == pytest.approx(30.0) and mean["ms_ssim"] == pytest.approx(0.96)
    old = [{k: v for k, v in p.items() if k not in ("ms_ssim", "psnr_of_mean_mse")} for p in points]
    (mean_old,) = rd.settings(old)  # points written before inrkit measured them
    assert mean_old["ms_ssim"] is None and mean_old["psnr_of_mean_mse"] is None
    table = rd.markdown({"settings": [mean], "deltas": {}, "anchor": None})
    assert "PSNR of mean MSE (dB)" in table and "| 30.00 |" in table and "0.9600" in table

"""Seeds, paired intervals, sweeps and parameter fronts (``compare --seeds``, ``sweep``, ``front``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import inrkit
from inrkit.experiments import runner as experiments
from inrkit.experiments import front
from inrkit.experiments import stats
from inrkit.experiments import sweep
from inrkit.cli import main
from inrkit.experiments.compare import compare, sharing_variants
from inrkit.errors import ConfigError

TINY = ["--width", "8", "--layers", "3", "--steps", "6", "--set", "train.lr=1e-3", "--no-progress"]


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error(result, fragment: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output


# -- the interval arithmetic, by hand --------------------------------------------------------------

def test_t_interval_matches_the_hand_computed_case():
    # mean 2, sample std 1, t(0.975, df=2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    interval = stats.t_interval([1.0, 2.0, 3.0])
    assert interval.mean == pytest.approx(2.0)
    assert interval.half_width == pytest.approx(2.484138, abs=1e-6)
    assert (interval.low, interval.high) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)
    assert interval.n == 3 and not interval.excludes_zero
    single = stats.t_interval([5.0])
    assert single.half_width is None and single.format() == "5.00"
    with pytest.raises(ConfigError):
        stats.t_interval([1.0, math.nan])


def test_paired_difference_is_one_observation_per_seed():
    method = {0: {"a": 3.0, "b": 5.0, "only-here": 9.0}, 1: {"a": 4.0, "b": 4.0}, 7: {"a": 1.0}}
    reference = {0: {"a": 1.0, "b": 1.0}, 1: {"a": 2.0, "b": 2.0}}
    # seed 0: mean of (2, 4) = 3; seed 1: mean of (2, 2) = 2; seed 7 has no reference.
    # mean 2.5, sample std 0.707107, t(0.975, 1) = 12.706205 -> half 12.706205 * 0.707107 / sqrt(2) = 6.353102
    paired = stats.paired_difference(method, reference)
    assert paired is not None and paired.unit == "seeds" and paired.n == 2
    assert paired.mean == pytest.approx(2.5)
    assert paired.half_width == pytest.approx(6.353102, abs=1e-6)


def test_paired_difference_over_items_with_one_seed():
    paired = stats.paired_difference({0: {"a": 3.0, "b": 5.0, "c": 4.0}}, {0: {"a": 1.0, "b": 1.0, "c": 1.0}})
    # differences 2, 4, 3: mean 3, std 1 -> half 2.484138 as above
    assert paired is not None and paired.unit == "items" and paired.n == 3
    assert (paired.mean, paired.half_width) == pytest.approx((3.0, 2.484138), abs=1e-6)
    assert stats.paired_difference({0: {"a": 1.0}}, {1: {"a": 1.0}}) is None
    assert stats.Interval.from_dict(paired.as_dict()) == paired


# -- parameter budgets -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [("5k", 5000), ("1.5M", 1_500_000), ("20000", 20000), (" 40K ", 40000)])
def test_budgets_parse(text: str, value: int):
    assert front.parse_budget(text) == value


@pytest.mark.parametrize("text", ["", "abc", "0", "-5k", "5x", "1e3", "10000000000000"])
def test_bad_budgets_are_refused(text: str):
    with pytest.raises(ConfigError):
        front.parse_budgets(text)


def test_match_width_takes_the_widest_network_within_the_budget():
    def count(width: int) -> int:
        return 3 * width * width + 10 * width + 5

    exact = count(20)
    assert front.match_width(count, exact, "m") == front.Match("m", exact, 20, exact)  # exactly
    below = front.match_width(count, exact - 1, "m")  # nearest below
    assert below.width == 19 and below.params == count(19) <= exact - 1 < count(20)
    assert front.match_width(count, 10**12, "m").width == front.MAX_WIDTH
    with pytest.raises(ConfigError, match="even width 1"):
        front.match_width(count, 10, "m")


def test_matches_use_the_models_exact_counts_for_these_items(image_dir: Path):
    base = {"data": [str(image_dir)], "model": {"layers": 4}}
    methods = sharing_variants(["separate", "minr"])
    for match in front.matches(base, methods, [5000, 20000]):
        sharing = {"name": match.method}

        def total(width: int, sharing: dict = sharing) -> int:
            config = {"sharing": sharing, "model": {"width": width, "layers": 4}}
            return inrkit.parameter_counts(config, n_items=4, item_shape=(24, 24)).total

        assert match.params == total(match.width) <= match.budget < total(match.width + 1)


# -- grids -------------------------------------------------------------------------------------------

def test_grid_axes_and_their_product():
    assert sweep.split_values("a,b,[1,2],'x,y'") == ["a", "b", "[1,2]", "'x,y'"]
    lr = sweep.parse_axis("lr=1e-3,5e-4")
    assert (lr.key, lr.values) == ("train.lr", ("1e-3", "5e-4"))
    shared = sweep.parse_axis("sharing.shared_layers=[2,3],[3]")
    variants = sweep.grid_variants([lr, shared])
    # names spell keys the short way, sorted by config key; the first axis still varies slowest
    assert [v.name for v in variants] == [
        "sharing.shared_layers=[2,3] lr=1e-3", "sharing.shared_layers=[3] lr=1e-3",
        "sharing.shared_layers=[2,3] lr=5e-4", "sharing.shared_layers=[3] lr=5e-4",
    ]
    assert variants[0].assignments == ("sharing.shared_layers=[2,3]", "train.lr=1e-3")
    swapped = sweep.grid_variants([shared, sweep.parse_axis("train.lr=1e-3,5e-4")])
    assert {v.folder_name for v in swapped} == {v.folder_name for v in variants}
    for bad in ("lr", "=1,2", "lr=1,,2", "lr=1,1", "seed=0,1", "a..b=1"):
        with pytest.raises(ConfigError):
            sweep.parse_axis(bad)
    with pytest.raises(ConfigError, match="more than once"):
        sweep.grid_variants([lr, sweep.parse_axis("train.lr=1")])


# -- end to end ---------------------------------------------------------------------------------------

def test_compare_with_seeds_pairs_every_method_with_the_reference(image_dir: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    result = cli("compare", image_dir, "--sharing", "separate,minr", "--seeds", "0,1", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads((out / "table.json").read_text())}
    minr, separate = rows["minr"], rows["separate"]
    assert minr["seeds"] == [0, 1] and minr["spread"] == "seeds" and minr["reference"] == "separate"
    assert "vs_reference" not in separate
    # the paired interval, recomputed from the per-item scores table.json keeps
    per_seed = []
    for mine, theirs in zip(minr["runs"], separate["runs"], strict=True):
        assert mine["seed"] == theirs["seed"]
        per_seed.append(sum(mine["psnr"][k] - theirs["psnr"][k] for k in mine["psnr"]) / len(mine["psnr"]))
    expected = stats.t_interval(per_seed)
    assert minr["vs_reference"]["mean"] == pytest.approx(expected.mean)
    assert minr["vs_reference"]["half_width"] == pytest.approx(expected.half_width)
    assert minr["psnr_mean"] == pytest.approx(sum(r["psnr_mean"] for r in minr["runs"]) / 2)
    for run in minr["runs"]:
        metrics = json.loads((out / run["run_dir"] / "metrics.json").read_text())
        assert metrics["psnr_mean"] == pytest.approx(run["psnr_mean"])
    assert (out / "minr" / "seed-1" / "config.json").is_file()
    assert "vs separate (dB, paired)" in result.output and "95% t-interval over seeds" in result.output


def test_an_interrupted_comparison_resumes_point_by_point(image_dir: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    base = {"data": [str(image_dir)], "model": {"width": 8, "layers": 3}, "train": {"steps": 6}}
    methods = sharing_variants(["separate", "minr"])
    compare(base, methods, out, seeds=[0])
    finished = out / "minr" / "seed-0" / "checkpoint.safetensors"
    before = finished.stat().st_mtime_ns
    # a point killed before its first snapshot leaves a folder without metrics.json
    (out / "separate" / "seed-0" / "metrics.json").unlink()
    seen: list[tuple[str, bool]] = []
    experiments.run(
        base, experiments.points(methods, [0, 1]), out, "compare",
        on_result=lambda _, r: seen.append((r.point.folder, r.reused)),
    )
    assert seen == [("separate/seed-0", False), ("separate/seed-1", False), ("minr/seed-0", True), ("minr/seed-1", False)]
    assert finished.stat().st_mtime_ns == before  # read back, not refitted
    rows = compare(base, methods, out, seeds=[0, 1])  # everything is fitted now: a pure read-back
    assert [r["seeds"] for r in rows] == [[0, 1], [0, 1]]
    # a different base config or a different recipe under a known name is refused, nothing changed
    listing = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(ConfigError, match="different base config"):
        compare({**base, "train": {"steps": 7}}, methods, out, seeds=[0])
    with pytest.raises(ConfigError, match="was fitted with"):
        compare(base, [experiments.Variant("minr", ("sharing.name=row",))], out, seeds=[0])
    with pytest.raises(ConfigError, match="not an `inrkit sweep`|not an `inrkit compare`"):
        sweep.sweep(base, [sweep.parse_axis("width=8")], out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == listing


def test_sweep_ranks_settings_and_resumes(image_dir: Path, tmp_path: Path):
    out = tmp_path / "sw"
    args = ["sweep", image_dir, "--grid", "lr=1e-4,3e-3", "--grid", "width=4,8", "--seeds", "0,1", "--out", out, *TINY]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "sweep.json").read_text())
    rows = summary["rows"]
    means = [r["metric_interval"]["mean"] for r in rows]
    assert means == sorted(means, reverse=True) and [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {r["method"] for r in rows} == {"width=4 lr=1e-4", "width=8 lr=1e-4", "width=4 lr=3e-3", "width=8 lr=3e-3"}
    assert rows[0]["metric_interval"]["n"] == 2 and summary["best"].startswith(f"best: {rows[0]['method']}")
    assert all(r["vs_reference"]["n"] == 2 for r in rows[1:])
    assert (out / "width-8-lr-1e-4" / "seed-1" / "metrics.json").is_file()
    args[2:6] = ["--grid", "width=4,8", "--grid", "train.lr=1e-4,3e-3"]  # the same grid, spelled otherwise
    again = cli(*args)
    assert again.exit_code == 0 and again.output.count("(already fitted)") == 8, again.output


def test_front_matches_budgets_and_draws_the_front(image_dir: Path, tmp_path: Path):
    out = tmp_path / "fr"
    result = cli("front", image_dir, "--sharing", "separate,minr", "--params", "2k,6k", "--seeds", "0,1", "--out", out, "--plots", *TINY[2:])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "front.json").read_text())
    assert len(summary["rows"]) == 4 and summary["reference"] == "separate"
    for row in summary["rows"]:
        assert row["params"] <= row["budget"]
        metrics = json.loads((out / row["runs"][0]["run_dir"] / "metrics.json").read_text())
        assert metrics["params"]["total"] == row["params"]  # the count matched is the model trained
        assert (row["method"] == "separate") == ("vs_reference" not in row)
    assert (out / "front.png").stat().st_size > 0
    assert "within 2,000: width" in result.output


def test_bad_comparison_options_are_one_clear_message(image_dir: Path, tmp_path: Path):
    one_error(cli("compare", image_dir, "--sharing", "separate,minr", "--reference", "row", "--out", tmp_path / "a", *TINY), "--reference 'row'")
    one_error(cli("compare", image_dir, "--sharing", "minr", "--seeds", "0,0", *TINY), "listed twice")
    one_error(cli("compare", image_dir, "--sharing", "minr", "--seeds", "a,b", *TINY), "expected seeds")
    one_error(cli("front", image_dir, "--sharing", "minr", "--params", "5k", "--width", "8"), "drop --width")
    one_error(cli("front", image_dir, "--sharing", "minr", "--params", "10"), "even width 1")
    one_error(cli("sweep", image_dir, "--grid", "seed=0,1", *TINY), "--seeds")
    assert not (tmp_path / "a").exists()


def test_a_diverging_point_is_left_out_and_the_sweep_goes_on(image_dir: Path, tmp_path: Path):
    out = tmp_path / "sw"
    args = ["sweep", image_dir, "--grid", "lr=1e-3,1e30", "--seeds", "0", "--out", out, *TINY[:4], "--steps", "20", "--no-progress"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "Warning: lr=1e30 seed 0 failed and is left out" in result.output
    summary = json.loads((out / "sweep.json").read_text())
    assert [r["method"] for r in summary["rows"]] == ["lr=1e-3"] and summary["failed"][0]["setting"] == "lr=1e30"
    assert "Not in the table" in (out / "sweep.md").read_text()
    again = cli(*args)  # the same seed diverges the same way: skipped, not refitted
    assert again.exit_code == 0 and "failed before; --retry-failed" in again.output, again.output
    retried = cli(*args, "--retry-failed")
    assert retried.exit_code == 0 and "failed before" not in retried.output and "lr=1e30 seed 0 failed" in retried.output
    only_bad = cli("sweep", image_dir, "--grid", "lr=1e30,2e30", "--out", tmp_path / "bad", *TINY[:4], "--steps", "20", "--no-progress")
    assert only_bad.exit_code != 0 and "Error: every fit failed" in only_bad.output


def test_resuming_never_deletes_finished_runs(image_dir: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    assert cli("compare", image_dir, "--sharing", "separate", "--seeds", "0", "--out", out, *TINY).exit_code == 0
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    one_error(cli("compare", image_dir, "--sharing", "separate", "--out", out, *TINY), "cannot sit beside")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    # a stray folder where a point goes is refused, not emptied
    stray = tmp_path / "c2"
    assert cli("compare", image_dir, "--sharing", "separate", "--out", stray, *TINY).exit_code == 0
    (stray / "minr").mkdir()
    (stray / "minr" / "notes.txt").write_text("mine")
    one_error(cli("compare", image_dir, "--sharing", "separate,minr", "--out", stray, *TINY), "not an unfinished run")
    assert (stray / "minr" / "notes.txt").read_text() == "mine"


def test_a_second_process_on_the_same_folder_is_refused(image_dir: Path, tmp_path: Path):
    import os
    import socket

    out = tmp_path / "cmp"
    args = ("compare", image_dir, "--sharing", "separate", "--out", out, *TINY)
    assert cli(*args).exit_code == 0 and not (out / experiments.LOCK_FILE).exists()
    (out / experiments.LOCK_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")  # a live owner
    one_error(cli(*args), "another inrkit process")
    (out / experiments.LOCK_FILE).write_text(f"{socket.gethostname()} 999999999")  # an owner that has ended
    assert cli(*args).exit_code == 0


def test_folder_names_are_bounded_and_distinct_ignoring_case(tmp_path: Path):
    long = experiments.Variant("x" * 400, ("train.lr=1e-3",))
    assert len(long.folder_name) <= experiments.MAX_FOLDER_NAME
    assert long.folder_name != experiments.Variant("x" * 399, ("train.lr=1e-3",)).folder_name
    with pytest.raises(ConfigError, match="ignoring case"):
        experiments.run({}, experiments.points(sharing_variants(["minr"]) + [experiments.Variant("MINR", ("sharing.name=minr",))], None), tmp_path / "o", "compare")
    assert not (tmp_path / "o").exists()


def test_a_damaged_experiment_file_is_one_clear_error(image_dir: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    assert cli("compare", image_dir, "--sharing", "separate", "--out", out, *TINY).exit_code == 0
    manifest = json.loads((out / "experiment.json").read_text())
    (out / "experiment.json").write_text(json.dumps({**manifest, "version": "one"}))
    one_error(cli("compare", image_dir, "--sharing", "separate", "--out", out, *TINY), "damaged")
    (out / "experiment.json").write_text(json.dumps({**manifest, "points": {"separate": 3}}))
    one_error(cli("compare", image_dir, "--sharing", "separate", "--out", out, *TINY), "damaged")


def test_tables_without_scores_say_n_a():
    row = {"method": "minr", "budget": 1000, "width": 4, "params": 900, "psnr_mean": None, "psnr_interval": None,
           "seeds": [0], "vs_reference": None}
    assert "| n/a |" in front.markdown([row], "separate")
    assert sweep.best_line([{"method": "a", "metric": "ssim", "metric_interval": None, "seeds": [0]}]).startswith("no setting has")


def test_sweep_by_ssim_pairs_on_ssim(image_dir: Path, tmp_path: Path):
    base = {"data": [str(image_dir)], "model": {"width": 8, "layers": 3}, "train": {"steps": 6}}
    _, rows = sweep.sweep(base, [sweep.parse_axis("lr=1e-4,3e-3")], tmp_path / "s", seeds=[0, 1], metric="ssim")
    assert rows[1]["vs_reference"] is not None
    by_seed = [{k: v for k, v in r.items()} for r in rows[1]["runs"]]
    assert len(by_seed) == 2 and abs(rows[1]["vs_reference"]["mean"]) < 1  # an SSIM difference, not dB


# -- an option the comparisons measured: the shared layers' own learning rate ----------------------------

def _moved(scale: float) -> tuple[float, float]:
    import numpy as np
    import torch

    images = [np.random.default_rng(i).random((8, 8, 3), dtype=np.float32) for i in range(3)]
    model = inrkit.create_model(n_items=3, item_shapes=[(8, 8)] * 3, width=8, layers=4, seed=0)
    shared0 = [p.detach().clone() for p in model.shared.parameters()]
    items0 = [p.detach().clone() for p in model.items.parameters()]
    inrkit.Trainer(steps=3, device="cpu", lr=1e-3, shared_lr_scale=scale).fit(model, images)

    def distance(now, before) -> float:
        return float(sum((a.detach() - b).abs().sum() for a, b in zip(now, before, strict=True)))

    return distance(model.shared.parameters(), shared0), distance(model.items.parameters(), items0)


def test_shared_lr_scale_moves_only_the_shared_layers_faster():
    shared_1, items_1 = _moved(1.0)
    shared_4, items_4 = _moved(4.0)
    assert items_4 == pytest.approx(items_1, rel=0.35)  # Adam: the first steps move by ~lr each
    assert shared_4 > 2.5 * shared_1

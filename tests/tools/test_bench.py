"""``inrkit bench`` reports what it promises (no timing is asserted: machines are noisy)."""

from __future__ import annotations

import copy
import json

import torch
from click.testing import CliRunner

from inrkit.tools.bench import ensemble_step, naive_siren, step_work
from inrkit.cli import main


def test_bench_json_has_every_measurement():
    result = CliRunner().invoke(main, ["bench", "--items", "2", "--size", "8", "--width", "8", "--layers", "3", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    for key in ("step_seconds", "naive_step_seconds", "ratio_vs_naive", "ensemble_step_seconds", "ratio_vs_ensemble",
                "floor_step_seconds", "ratio_vs_floor", "peak_memory_bytes"):
        assert r[key] > 0, key
    assert abs(r["ratio_vs_naive"] - r["naive_step_seconds"] / r["step_seconds"]) < 1e-9
    assert abs(r["ratio_vs_ensemble"] - r["ensemble_step_seconds"] / r["step_seconds"]) < 1e-9
    # MINR at width 8, 3 layers: first 2->8, projection 8->8, hidden2 8->8, last 8->3 over 2*64 rows.
    assert r["step_matmul_flops"] == 6 * 128 * (2 * 8 + 8 * 8 + 8 * 8 + 8 * 3)
    assert r["step_sine_evaluations"] == 2 * 128 * (8 + 8 + 8)
    table = CliRunner().invoke(main, ["bench", "--items", "1", "--size", "4", "--width", "4", "--repeats", "1", "--no-naive"])
    assert table.exit_code == 0 and "kernel floor" in table.output and "physical floor" in table.output
    assert "naive" not in table.output
    for key in ("ensemble_compiled_step_seconds", "peak_gemm_flops_per_second", "copy_bytes_per_second",
                "flop_floor_step_seconds", "traffic_floor_step_seconds", "ratio_vs_physical_floor"):
        assert r[key] > 0, key
    assert r["physical_floor_step_seconds"] == max(r["flop_floor_step_seconds"], r["traffic_floor_step_seconds"])
    assert r["flop_floor_step_seconds"] == r["step_matmul_flops"] / r["peak_gemm_flops_per_second"]
    # the bytes the eager layout moves per point, float32 (docs/performance.md)
    layers = [(2, 8, False), (8, 8, False), (8, 8, False), (8, 3, True)]
    values = sum(3 * (i + o) + (3 * o if last else 5 * o) for i, o, last in layers)
    assert r["step_bytes"] == 4 * values * 128 and r["bytes_per_point"] == 4 * values


def test_naive_reference_is_a_plain_siren():
    net = naive_siren(width=16, layers=5)
    assert sum(p.numel() for p in net.parameters()) == 2 * 16 + 16 + 3 * (16 * 16 + 16) + 16 * 3 + 3
    assert callable(step_work)


def test_torch_func_ensemble_takes_the_naive_loops_adam_step():
    """The ensembling reference trains the same networks as the naive loop: one step of each, from
    the same weights on the same images, gives the same weights."""
    torch.manual_seed(0)
    nets = [naive_siren(width=8, layers=3) for _ in range(3)]
    copies = copy.deepcopy(nets)
    coords, targets = torch.rand(20, 2), torch.rand(3, 20, 3)
    step, params = ensemble_step(nets, coords, targets)
    step()
    compiled_nets = copy.deepcopy(copies)
    optimizer = torch.optim.Adam([p for n in copies for p in n.parameters()], lr=1e-4)
    for net, target in zip(copies, targets, strict=True):
        ((net(coords) - target) ** 2).mean().backward()
    optimizer.step()
    assert set(params) == {name for name, _ in copies[0].named_parameters()}
    for name, value in params.items():
        expected = torch.stack([dict(n.named_parameters())[name] for n in copies])
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    compiled_step, compiled_params = ensemble_step(compiled_nets, coords, targets, compiled=True)
    compiled_step()  # the compiled reference trains the same networks too
    for name, value in compiled_params.items():
        torch.testing.assert_close(value, params[name], rtol=1e-5, atol=1e-6)


def test_bench_profile_names_the_steps_operators():
    """``--profile`` lists each step's most expensive operators: real ATen operators with calls per
    step, the matrix products among them (a step without them would not be this model's)."""
    result = CliRunner().invoke(main, ["bench", "--items", "2", "--size", "8", "--width", "8", "--layers", "3", "--repeats", "1",
                                       "--profile", "--json"])
    assert result.exit_code == 0, result.output
    profile = json.loads(result.output)["profile"]
    assert set(profile) == {"inrkit", "naive", "torch.func"}
    for rows in profile.values():
        assert rows and all(r["self_ms_per_step"] > 0 and r["calls_per_step"] > 0 for r in rows)
        assert [r["self_ms_per_step"] for r in rows] == sorted((r["self_ms_per_step"] for r in rows), reverse=True)
    assert any(r["name"] in ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm") for r in profile["inrkit"])
    table = CliRunner().invoke(main, ["bench", "--items", "1", "--size", "4", "--width", "4", "--repeats", "1", "--no-naive", "--profile"])
    assert table.exit_code == 0 and "inrkit step: operators by self time (host)" in table.output
    assert "naive step:" not in table.output

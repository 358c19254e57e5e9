"""Table II of the MINR paper in miniature, with seeds: every backbone, separate vs MINR.

For each activation, each sharing variant (``separate``, ``minr``, ``minr`` without projection
layers) and each seed, one fit of the same images with the same budget; reports the mean PSNR over
seeds with a 95% t-interval, and the paired difference to ``separate`` (same seed, same items)
with its interval. Fits run in parallel processes (one thread each), and every finished fit is
kept in ``--out``'s JSON, so an interrupted table resumes where it stopped; the table is made from
every fit in the JSON with the same set, item count, size and steps, so it may be run in pieces
and one JSON may hold several settings. Separate fits at a
narrower width in the same JSON (``--variants separate --widths 48``) add a second table: MINR
against the separate fit of about the same parameter count (quality per parameter).

    python benchmarks/backbones.py --set kodak --seeds 0,1,2 --out benchmarks/out/backbones-kodak.json
    python benchmarks/backbones.py --set imagenet40 --max-side 64 --steps 300 --seeds 0,1,2 --out ...
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VARIANTS = {
    "separate": {"name": "separate"},
    "minr": {"name": "minr"},
    "minr w/o projection": {"name": "minr", "projection": False},
}


def data_set(name: str, root: Path = DATA) -> list[str]:
    if name == "kodak":
        return [str(root / "kodak" / f"kodim0{i}.png") for i in range(1, 5)]
    if name == "imagenet40":
        return [str(p) for p in sorted((root / "imagenet100").glob("*.JPEG"))[:40]]
    raise SystemExit(f"unknown data set {name!r}: kodak or imagenet40")


def fit_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    import inrkit

    config = {
        "activation": {"name": job["activation"], **job.get("activation_options", {})},
        "sharing": VARIANTS[job["variant"]],
        "signal": {"name": "image", "max_side": job["max_side"]},
        "model": {"width": job["width"], "layers": 5},
        "train": {"steps": job["steps"], "seed": job["seed"], "device": job.get("device", "cpu")},
    }
    started = time.perf_counter()
    metrics = inrkit.fit(config, data=job["data"], save=False).metrics
    assert metrics is not None
    return {
        **{k: v for k, v in job.items() if k != "data"},
        "psnr": [it.psnr for it in metrics.items],
        "psnr_mean": metrics.psnr_mean,
        "params": metrics.params.total,
        "seconds": time.perf_counter() - started,
    }


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for a single value): :mod:`inrkit.experiments.stats`."""
    from inrkit.experiments.stats import t_interval

    found = t_interval(values)
    return found.mean, found.half_width or 0.0


def key(r: dict[str, Any]) -> tuple:
    return (r["activation"], r["variant"], r["width"], r["seed"])


def setting(r: dict[str, Any]) -> tuple:
    """What a fit was measured on: the set, its first ``items`` images (``None``: all), size and steps."""
    return (r["set"], r.get("items"), r["max_side"], r["steps"])


def table(results: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| backbone | width | method | params | PSNR (dB) | vs separate (paired) | seeds |", "| --- | --- | --- | --- | --- | --- | --- |"]
    by_key = {key(r): r for r in results}
    for activation in dict.fromkeys(r["activation"] for r in results):
        for width in sorted({r["width"] for r in results if r["activation"] == activation}):
            for variant in VARIANTS:
                rows = [r for r in results if (r["activation"], r["variant"], r["width"]) == (activation, variant, width)]
                if not rows:
                    continue
                mean, half = interval([r["psnr_mean"] for r in rows])
                diffs = [
                    r["psnr_mean"] - by_key[(activation, "separate", width, r["seed"])]["psnr_mean"]
                    for r in rows if (activation, "separate", width, r["seed"]) in by_key
                ]
                paired = "" if variant == "separate" or not diffs else "{:+.2f} ± {:.2f}".format(*interval(diffs))
                lines.append(
                    f"| {activation} | {width} | {variant} | {rows[0]['params']:,} | {mean:.2f} ± {half:.2f} | {paired} | {len(rows)} |"
                )
    return "\n".join(lines) + "\n" + equal_params_table(results)


def equal_params_table(results: list[dict[str, Any]]) -> str:
    """MINR against the separate fit of (nearly) the same parameter count, where one was run
    (``--variants separate --widths W`` for a narrower W): quality per parameter, the paper's claim."""
    lines = []
    by_key = {key(r): r for r in results}
    for activation in dict.fromkeys(r["activation"] for r in results):
        separate = {r["width"]: r["params"] for r in results if (r["activation"], r["variant"]) == (activation, "separate")}
        for width in sorted({r["width"] for r in results if (r["activation"], r["variant"]) == (activation, "minr")}):
            rows = [r for r in results if (r["activation"], r["variant"], r["width"]) == (activation, "minr", width)]
            other = min((w for w in separate if w != width), key=lambda w: abs(separate[w] - rows[0]["params"]), default=None)
            if other is None:
                continue
            diffs = [r["psnr_mean"] - by_key[(activation, "separate", other, r["seed"])]["psnr_mean"]
                     for r in rows if (activation, "separate", other, r["seed"]) in by_key]
            if diffs:
                lines.append(f"| {activation} | minr w{width}: {rows[0]['params']:,} | separate w{other}: {separate[other]:,} | "
                             "{:+.2f} ± {:.2f} | {} |".format(*interval(diffs), len(diffs)))
    if not lines:
        return ""
    return "\n".join(["", "At about equal parameters (MINR minus the separate fit whose parameter count is nearest, same seed):", "",
                      "| backbone | MINR | separate | difference (dB) | seeds |", "| --- | --- | --- | --- | --- |", *lines]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="kodak", help="kodak (kodim01-04) or imagenet40 (the first 40 samples)")
    parser.add_argument("--max-side", type=int, default=96)
    parser.add_argument("--items", type=int, default=None, help="use only the first N images of the set [default: all]")
    parser.add_argument("--widths", default="64")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--activations", default="siren,gauss,wire,finer,pemlp")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (then use --jobs 1 or a few processes sharing the card)")
    parser.add_argument("--data-root", type=Path, default=DATA, help="folder holding kodak/ and imagenet100/ [default: ../shared/data]")
    parser.add_argument("--out", type=Path, required=True, help="JSON of every fit (resumed if it exists); the table goes beside it as .md")
    args = parser.parse_args()

    data = data_set(args.set, args.data_root)
    if args.items is not None and not 1 <= args.items <= len(data):
        raise SystemExit(f"--items must be between 1 and {len(data)} for {args.set}")
    data = data[: args.items]
    done: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.is_file() else []
    have = {(setting(r), key(r)) for r in done}
    jobs = [
        {"activation": a, "variant": v, "width": int(w), "seed": int(s), "steps": args.steps, "max_side": args.max_side,
         "set": args.set, "items": args.items, "device": args.device, "data": data}
        for a in args.activations.split(",") for w in args.widths.split(",") for v in args.variants.split(",")
        for s in args.seeds.split(",")
    ]
    todo = [j for j in jobs if (setting(j), key(j)) not in have]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} fits already done; {len(todo)} to go on {args.jobs} processes", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(fit_one, todo):
            done.append(result)
            args.out.write_text(json.dumps(done, indent=1) + "\n")
            print(f"{result['activation']:6} {result['variant']:20} w{result['width']} seed {result['seed']}: "
                  f"{result['psnr_mean']:.2f} dB ({result['seconds']:.0f} s)", flush=True)
    import torch

    # Every fit in the JSON with this invocation's setting, not only this invocation's jobs: a table
    # run in pieces (other widths, seeds or backbones first) comes out whole.
    same = [r for r in done if setting(r) == setting(jobs[0])]
    header = (
        f"{args.set}: {len(data)} images, longer side {args.max_side} px, 5 layers, {args.steps} steps, each backbone's "
        f"default lr and options; seeds {','.join(map(str, sorted({r['seed'] for r in same})))}; mean over seeds of the mean PSNR over items, ± the 95% t-interval; "
        f"paired: MINR minus separate with the same seed. {datetime.date.today()}, torch {torch.__version__}, "
        f"{platform.machine()}, {args.device}, one thread per fit"
    )
    md = table(same, header)
    args.out.with_suffix(".md").write_text(md)
    print("\n" + md)


if __name__ == "__main__":
    main()

"""``inrkit rd``: rate-distortion curves of INR methods against image codecs, on the same images.

Every INR setting (a sharing strategy at a width) is fitted once into ``OUT/runs/<setting>/``
(resumable, as ``compare`` is), then compressed at every bit depth into ``OUT/inrz/``; every codec
is measured at a sweep of qualities on the very images the runs fit (their signal's items). Each
point is a JSON file in ``OUT/points/``, written once: given the same ``--out`` again, nothing
already measured is recomputed. After every point ``rd.json``, ``rd.md`` (every point; each INR
method's Bjøntegaard deltas against JPEG, from the ``bjontegaard`` package) and ``rd.png``
(PSNR against bpp) are rewritten.

A method's curve is the Pareto front of its settings (widths x bits): the points no cheaper
setting of the same method beats. With ``seeds``, every setting is fitted once per seed; a
setting's point is then the mean over seeds (bpp and PSNR), with the t-interval of its PSNR, and
each method's deltas come with the t-interval over seeds of the per-seed deltas (each seed's own
front against JPEG, which has no seed).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inrkit import api, files
from inrkit.codec.quantize import MAX_BITS, MIN_BITS
from inrkit.config import ResolvedRun
from inrkit.errors import CheckpointError, ConfigError
from inrkit.experiments import runner as experiments
from inrkit.experiments.baselines import CODECS, check_codecs, codec_point
from inrkit.experiments.runner import PointResult, Variant
from inrkit.images import to_pixels
from inrkit.limits import MAX_STEPS, MAX_WIDTH, whole_number
from inrkit.runs.compress import compress
from inrkit.runs.fit import load_items

RD_JSON, RD_MD, RD_PNG = "rd.json", "rd.md", "rd.png"
RD_FORMAT = "inrkit.rd"
#: What every point file must hold (``files.read_record``'s kinds).
POINT_FIELDS = {"method": "str", "setting": "str", "bpp": "number", "psnr": "number?", "images_sha256": "str"}
ANCHOR = "jpeg"


def setting_variants(sharing: Sequence[str], widths: Sequence[int]) -> list[Variant]:
    """One fit per strategy and width: ``<strategy>-w<width>``."""
    return [Variant(f"{s}-w{w}", (f"sharing.name={s}", f"model.width={w}")) for s in sharing for w in widths]


def pareto(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The points no point of lower (or equal) rate beats in PSNR, by increasing rate."""
    front: list[Mapping[str, Any]] = []
    for p in sorted((p for p in points if p.get("psnr") is not None), key=lambda p: (p["bpp"], -p["psnr"])):
        if not front or p["psnr"] > front[-1]["psnr"]:
            front.append(p)
    return front


#: Bjøntegaard deltas are given only where the two curves overlap over at least this share of the
#: shorter one's range (log-rate for BD-PSNR, PSNR for BD-rate); a delta over a sliver of
#: overlap extrapolates instead of comparing.
MIN_OVERLAP = 0.5


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """The overlap of the ranges of ``a`` and ``b`` as a share of the shorter range."""
    lo, hi = max(min(a), min(b)), min(max(a), max(b))
    shorter = min(max(a) - min(a), max(b) - min(b))
    return max(0.0, hi - lo) / shorter if shorter > 0 else 0.0


def bd_delta(anchor: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Bjøntegaard deltas of ``test`` against ``anchor`` (PSNR in dB at equal rate, rate in % at
    equal PSNR) over their Pareto fronts, with the overlaps they rest on; a delta is ``None``
    where a front has fewer than two points or the curves overlap less than :data:`MIN_OVERLAP`."""
    import warnings

    import bjontegaard

    a, t = pareto(anchor), pareto(test)
    out: dict[str, float | None] = {"bd_psnr": None, "bd_rate": None, "rate_overlap": None, "psnr_overlap": None}
    if len(a) < 2 or len(t) < 2:
        return out
    args = ([p["bpp"] for p in a], [p["psnr"] for p in a], [p["bpp"] for p in t], [p["psnr"] for p in t])
    out["rate_overlap"] = _overlap([math.log(r) for r in args[0]], [math.log(r) for r in args[2]])
    out["psnr_overlap"] = _overlap(args[1], args[3])
    for key, fn, overlap in (("bd_psnr", bjontegaard.bd_psnr, out["rate_overlap"]), ("bd_rate", bjontegaard.bd_rate, out["psnr_overlap"])):
        if overlap is None or overlap < MIN_OVERLAP:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the package's own overlap warning: checked above
                value = float(fn(*args, method="pchip", require_matching_points=False, min_overlap=0.0))
            out[key] = value if math.isfinite(value) else None
        except (ValueError, ZeroDivisionError, IndexError):
            out[key] = None
    return out


def matching_rate(anchor: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]]) -> float | None:
    """The lowest rate at which ``test``'s front reaches the anchor's PSNR at that same rate
    (linear interpolation of the anchor's front); ``None`` if it never does."""
    front = pareto(anchor)
    if len(front) < 2:
        return None
    for p in pareto(test):
        for lo, hi in itertools.pairwise(front):
            if lo["bpp"] <= p["bpp"] <= hi["bpp"]:
                frac = (p["bpp"] - lo["bpp"]) / (hi["bpp"] - lo["bpp"]) if hi["bpp"] > lo["bpp"] else 0.0
                if p["psnr"] >= lo["psnr"] + frac * (hi["psnr"] - lo["psnr"]):
                    return float(p["bpp"])
    return None


def images_fingerprint(images: Sequence[Any]) -> str:
    """SHA-256 of the images' 8-bit pixels and shapes: which images a point was measured on."""
    import hashlib

    digest = hashlib.sha256()
    for image in images:
        digest.update(repr(tuple(image.shape)).encode())
        digest.update(to_pixels(image).tobytes())
    return digest.hexdigest()


def _check_folder(folder: Path) -> None:
    """Refuse an ``--out`` that is neither new, empty nor an earlier ``inrkit rd`` (its ``rd.json``
    names the format; one written before the tag holds points and settings): rd rewrites
    ``rd.json``, ``rd.md`` and ``rd.png`` and must never overwrite files it did not write."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} exists and is not a folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    summary = folder / RD_JSON
    try:
        earlier = files.read_json(summary) if summary.is_file() and not summary.is_symlink() else None
    except CheckpointError:
        earlier = None
    ours = isinstance(earlier, dict) and (
        earlier.get("format") == RD_FORMAT or ("format" not in earlier and {"points", "settings"} <= set(earlier))
    )
    if not ours:
        raise ConfigError(
            f"--out {folder} already holds files that are not an inrkit rd experiment; choose a new or empty "
            "folder (nothing was changed)"
        )


def _earlier_points(points_dir: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """The points an earlier run measured, each checked; refuse an ``--out`` whose points were
    measured on other images. Nothing is written."""
    if not points_dir.is_dir():
        return {}
    earlier: dict[str, dict[str, Any]] = {}
    for path in sorted(points_dir.glob("*.json")):
        point = files.read_record(path, POINT_FIELDS, "an inrkit rd point", fix="delete it to measure the point again")
        if point["images_sha256"] != fingerprint:
            raise ConfigError(
                f"{points_dir.parent} holds points measured on other images ({path.name}); "
                "give a new --out, or the same data and signal settings to extend it"
            )
        earlier[path.stem] = point
    return earlier


def rd(
    base: Mapping[str, Any],
    *,
    sharing: Sequence[str],
    widths: Sequence[int],
    bits: Sequence[int],
    codecs: Sequence[str],
    out: str | Path,
    qualities: Mapping[str, Sequence[int]] | None = None,
    qat_steps: int = 0,
    seeds: Sequence[int] | None = None,
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure every point (see the module's docstring) and return ``rd.json``'s content. With
    ``qat_steps``, each fit is also compressed after that many steps of quantisation-aware
    fine-tuning (the method ``<strategy>+qat``), on the device the fits use. ``seeds``: fit every
    setting once per seed (``train.seed``) instead of once at the config's seed."""
    if not sharing and not codecs:
        raise ConfigError("nothing to measure: give --sharing and/or --codecs")
    bits = [whole_number(b, "--bits", MIN_BITS, MAX_BITS) for b in bits]
    if sharing and not bits:
        raise ConfigError("give --bits for the INR methods")
    qat_steps = whole_number(qat_steps, "--qat-steps", 0, MAX_STEPS)
    widths = [whole_number(w, "--width", 1, MAX_WIDTH) for w in widths]
    codecs = check_codecs(codecs)
    folder = Path(out)
    points_dir = folder / "points"
    _check_folder(folder)
    variants = setting_variants(sharing, widths) if sharing else []
    if sharing:  # every fit's config and a resumed folder's recipe, before anything is written
        experiments.check(base, experiments.points(variants, seeds), folder / "runs", "rd")
    config = api.as_config(dict(base))
    resolved = ResolvedRun(config)
    items = load_items(resolved)
    images = [resolved.signal.eval_view(it) for it in items]
    fingerprint = images_fingerprint(images)
    points: dict[str, dict[str, Any]] = _earlier_points(points_dir, fingerprint)

    def measure(name: str, compute: Callable[[], dict[str, Any]]) -> None:
        """The point ``name``: read back when an earlier run measured it, else measured and written."""
        if name in points:
            return
        path = points_dir / f"{name}.json"
        point = {**compute(), "images_sha256": fingerprint}
        files.write_json(path, point)
        points[name] = point
        _write(folder, points, sharing)
        if on_point is not None:
            on_point(point)

    folder.mkdir(parents=True, exist_ok=True)
    for codec in codecs:
        for quality in (qualities or {}).get(codec, CODECS[codec][1]):
            measure(f"{codec}-q{quality}", functools.partial(codec_point, images, codec, quality))
    if sharing:
        setting = dict(zip((v.name for v in variants), itertools.product(sharing, widths), strict=True))

        def compressed(result: PointResult) -> None:
            variant, seed = result.point.variant.name, result.point.seed
            strategy, width = setting[variant]
            for b in bits:
                for qat in ([0, qat_steps] if qat_steps else [0]):
                    name = variant + ("" if seed is None else f"-s{seed}") + f"-b{b}" + (f"-qat{qat}" if qat else "")

                    def compute(name: str = name, b: int = b, qat: int = qat) -> dict[str, Any]:
                        done = compress(result.run_dir, folder / "inrz" / f"{name}.inrz", bits=b, force=True, items=items,
                                        qat_steps=qat, device=str(config.train.device))
                        rate = done.rate.to_dict()
                        return {
                            "method": strategy + ("+qat" if qat else ""), "setting": f"w{width} b{b}", "width": width,
                            "bits": b, "fine_bits": done.fine_bits, "qat_steps": qat, "qat_kept_step": done.qat_kept_step, "seed": seed,
                            **{k: rate[k] for k in ("bytes", "pixels", "bpp")}, "psnr": done.psnr_after,
                            "psnr_of_mean_mse": done.psnr_of_mean_mse_after,
                            "ssim": done.ssim_after, "ms_ssim": done.ms_ssim_after, "psnr_float": done.psnr_before,
                            **{k: rate[k] for k in ("bpp_header", "bpp_shared", "bpp_items")},
                            "params": result.metrics.params.total,
                        }

                    measure(name, compute)

        experiments.run_collecting(
            base, experiments.points(variants, seeds), folder / "runs", "rd", lambda folder, collected: None,
            progress=progress, on_note=on_note, on_point=compressed,
        )
    return _write(folder, points, sharing)


def settings(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One point per method and setting: the mean over its seeds of bpp, PSNR (both averages),
    SSIM and MS-SSIM, with the PSNR's t-interval (``psnr_interval``, ``None`` for one seed) and the
    seed count. A score some seed lacks (MS-SSIM of small images; points written before inrkit
    measured it) is ``None``."""
    from inrkit.experiments.stats import t_interval

    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["method"], p["setting"]), []).append(p)
    out = []
    for (method, setting), group in groups.items():
        mean = {"method": method, "setting": setting, "seeds": len(group), "bpp": math.fsum(p["bpp"] for p in group) / len(group)}
        for key in ("psnr", "psnr_of_mean_mse", "ssim", "ms_ssim"):
            values = [p[key] for p in group if p.get(key) is not None]
            complete = len(values) == len(group)
            mean[key] = math.fsum(values) / len(values) if complete else None
            if key == "psnr":  # a perfect reconstruction scores inf dB: its mean is inf, with no interval
                finite = complete and all(math.isfinite(v) for v in values)
                mean["psnr_interval"] = t_interval(values).half_width if finite else None
        out.append(mean)
    return sorted(out, key=lambda p: (p["method"], p["bpp"]))


def _seed_deltas(anchor: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each seed's BD-PSNR and BD-rate against the anchor, as a mean with its t-interval over the
    seeds where the delta exists (``None`` with fewer than two seeds)."""
    from inrkit.experiments.stats import t_interval

    by_seed: dict[int, list[Mapping[str, Any]]] = {}
    for p in test:
        if p.get("seed") is not None:
            by_seed.setdefault(p["seed"], []).append(p)
    out: dict[str, Any] = {}
    for key in ("bd_psnr", "bd_rate"):
        values = [d for d in (bd_delta(anchor, own)[key] for own in by_seed.values()) if d is not None]
        found = t_interval(values) if len(values) >= 2 else None
        out[f"{key}_seeds"] = None if found is None else {"mean": found.mean, "half_width": found.half_width, "n": found.n}
    return out


def _summary(points: Mapping[str, Mapping[str, Any]], sharing: Sequence[str]) -> dict[str, Any]:
    ordered = sorted(points.values(), key=lambda p: (p["method"], p.get("seed") or 0, p["bpp"]))
    means = settings(ordered)
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for p in means:
        by_method.setdefault(p["method"], []).append(p)
    anchor = by_method.get(ANCHOR, [])
    deltas = {}
    for method in [m for s in sharing for m in (s, f"{s}+qat")]:
        if method in by_method and anchor:
            deltas[method] = {**bd_delta(anchor, by_method[method]), "matches_jpeg_at_bpp": matching_rate(anchor, by_method[method]),
                              **_seed_deltas(anchor, [p for p in ordered if p["method"] == method])}
    return {"format": RD_FORMAT, "points": ordered, "settings": means, "anchor": ANCHOR if anchor else None, "deltas": deltas}


def _write(folder: Path, points: Mapping[str, Mapping[str, Any]], sharing: Sequence[str]) -> dict[str, Any]:
    """Rewrite ``rd.json``, ``rd.md`` and ``rd.png`` from the points so far; returns the summary."""
    summary = _summary(points, sharing)
    files.write_json(folder / RD_JSON, summary)
    files.write_text(folder / RD_MD, markdown(summary))
    try:
        plot(summary, folder / RD_PNG)
    except Exception as exc:  # noqa: BLE001 - a figure must never cost the measurements
        import warnings

        warnings.warn(f"could not draw {RD_PNG}: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
    return summary


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{min(value, 1.0):.0%}"


def _with_interval(value: float | None, half: float | None, digits: int) -> str:
    return _fmt(value, digits) + ("" if value is None or half is None else f" ± {half:.{digits}f}")


def markdown(summary: Mapping[str, Any]) -> str:
    """Every setting (method, setting, bpp, PSNR as the mean of the images' PSNRs and as the PSNR
    of their mean MSE, SSIM, MS-SSIM; means over seeds), then each INR method's deltas against
    JPEG (computed on the first PSNR, as the paper's curves are)."""
    rows = summary["settings"]
    lines = ["| method | setting | bpp | PSNR (dB) | PSNR of mean MSE (dB) | SSIM | MS-SSIM | seeds | on Pareto front |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    fronts = {method: {id(p) for p in pareto([q for q in rows if q["method"] == method])} for method in {p["method"] for p in rows}}
    for p in rows:
        mark = "yes" if id(p) in fronts[p["method"]] else ""
        lines.append(f"| {p['method']} | {p['setting']} | {p['bpp']:.4f} | {_with_interval(p.get('psnr'), p.get('psnr_interval'), 2)} | "
                     f"{_fmt(p.get('psnr_of_mean_mse'), 2)} | {_fmt(p.get('ssim'), 3)} | {_fmt(p.get('ms_ssim'), 4)} | "
                     f"{p['seeds']} | {mark} |")
    if summary["deltas"]:
        lines += ["", f"Bjøntegaard deltas against {summary['anchor']} (Pareto fronts of the mean points, pchip "
                  "interpolation; BD-PSNR > 0 and BD-rate < 0 favour the method; – where the curves overlap over less than "
                  f"{MIN_OVERLAP:.0%} of the shorter one's log-rate or PSNR range). With several seeds, \"over seeds\" is the "
                  "mean and 95% t-interval of each seed's own delta:", "",
                  "| method | BD-PSNR (dB) | over seeds | rate overlap | BD-rate (%) | over seeds | PSNR overlap "
                  "| matches JPEG's PSNR from (bpp) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for method, d in summary["deltas"].items():
            spread = {key: _seed_text(d.get(f"{key}_seeds"), digits) for key, digits in (("bd_psnr", 2), ("bd_rate", 1))}
            lines.append(f"| {method} | {_fmt(d['bd_psnr'], 2)} | {spread['bd_psnr']} | {_pct(d.get('rate_overlap'))} | "
                         f"{_fmt(d['bd_rate'], 1)} | {spread['bd_rate']} | {_pct(d.get('psnr_overlap'))} | "
                         f"{_fmt(d['matches_jpeg_at_bpp'], 3)} |")
    return "\n".join(lines) + "\n"


def _seed_text(found: Mapping[str, Any] | None, digits: int) -> str:
    return "–" if found is None else f"{found['mean']:.{digits}f} ± {found['half_width']:.{digits}f} ({found['n']} seeds)"


def plot(summary: Mapping[str, Any], path: Path) -> Path:
    """PSNR against bpp: each method's Pareto front as a line (means over seeds, with the PSNR's
    interval), its other settings as dots."""
    from inrkit.runs.plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    methods = list(dict.fromkeys(p["method"] for p in summary["settings"]))
    for i, method in enumerate(methods):
        own = [p for p in summary["settings"] if p["method"] == method and p.get("psnr") is not None]
        front = pareto(own)
        color = f"C{i % 10}"
        dashed = method in CODECS
        ax.errorbar([p["bpp"] for p in front], [p["psnr"] for p in front], yerr=[p.get("psnr_interval") or 0.0 for p in front],
                    fmt="--" if dashed else "-", marker="o", ms=3, capsize=2, color=color, label=method)
        others = [p for p in own if p not in front]
        ax.scatter([p["bpp"] for p in others], [p["psnr"] for p in others], s=8, color=color, alpha=0.35)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)

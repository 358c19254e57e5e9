"""``inrkit compress``: a finished run as one quantised, entropy-coded ``.inrz`` file, and its rate.

Rate is the real size of the file: bits per pixel = file bytes x 8 / the pixels of every item
(each at its evaluation size, the image its PSNR is measured on). The split says where the bits
go: the header (config, names, layout), the shared section (the shared layers, once for all
items), and the items' sections (the first, projection and last layers of each). Quality is
measured before and after quantisation on the run's own data, when it can still be loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from inrkit import files
from inrkit.codec.inrz import SUFFIX, Sizes, write
from inrkit.codec.quantize import MAX_BITS, MIN_BITS
from inrkit.config import ResolvedRun
from inrkit.errors import ConfigError, InrkitError
from inrkit.interfaces import INRModel, Item
from inrkit.limits import MAX_STEPS, count_pixels, whole_number
from inrkit.runs import layout
from inrkit.runs.folder import CompressedRun, Run
from inrkit.training.evaluate import evaluate


@dataclasses.dataclass
class Rate:
    """Bits per pixel of a file, by part (``bpp = header + shared + items``)."""

    bytes: int
    pixels: int
    header_bytes: int
    shared_bytes: int
    item_bytes: list[int]

    @classmethod
    def of(cls, sizes: Sizes, pixels: int) -> Rate:
        return cls(sizes.total, pixels, sizes.header, sizes.shared, list(sizes.items))

    @property
    def bpp(self) -> float:
        return 8 * self.bytes / self.pixels

    @property
    def bpp_known_decoder(self) -> float:
        """The rate when the decoder already holds the shared layers (items encoded against a
        published shared model, ``inrkit encode``): header and items' sections only."""
        return self.part(self.header_bytes + sum(self.item_bytes))

    def part(self, nbytes: int) -> float:
        return 8 * nbytes / self.pixels

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes, "pixels": self.pixels, "bpp": self.bpp, "bpp_known_decoder": self.bpp_known_decoder,
            "bpp_header": self.part(self.header_bytes), "bpp_shared": self.part(self.shared_bytes),
            "bpp_items": self.part(sum(self.item_bytes)), "header_bytes": self.header_bytes,
            "shared_bytes": self.shared_bytes, "item_bytes": self.item_bytes,
        }


@dataclasses.dataclass
class CompressResult:
    """What :func:`compress` wrote and measured."""

    path: Path
    bits: int
    per_channel: bool
    rate: Rate
    #: Bits of the first layer's tensors and of every bias.
    fine_bits: int | None = None
    #: Steps of quantisation-aware fine-tuning before the file was written (0: none).
    qat_steps: int = 0
    #: The fine-tuning step whose weights were kept (0: the start, i.e. plain quantisation).
    qat_kept_step: int | None = None
    #: The run whose frozen shared layers these items were encoded against (``inrkit encode``).
    encoded_from: str | None = None
    #: Mean PSNR (dB) over the items of the run's model and of the file's; ``None`` when the run's
    #: data could not be loaded (then ``note`` says why).
    psnr_before: float | None = None
    psnr_after: float | None = None
    ssim_after: float | None = None
    #: After quantisation: mean MS-SSIM (``None`` where undefined) and the PSNR of the mean MSE.
    ms_ssim_after: float | None = None
    psnr_of_mean_mse_after: float | None = None
    item_psnr_after: list[float | None] | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "bits": self.bits, "fine_bits": self.fine_bits, "per_channel": self.per_channel,
            "qat_steps": self.qat_steps, "qat_kept_step": self.qat_kept_step, "encoded_from": self.encoded_from,
            **self.rate.to_dict(),
            "psnr_before": self.psnr_before, "psnr_after": self.psnr_after, "ssim_after": self.ssim_after,
            "ms_ssim_after": self.ms_ssim_after, "psnr_of_mean_mse_after": self.psnr_of_mean_mse_after,
            "item_psnr_after": self.item_psnr_after, "note": self.note,
        }


def item_pixels(run: Run) -> int:
    """Pixels (spatial points) of every item at its evaluation size."""
    return sum(count_pixels(info.get("eval_shape", info["shape"])) for info in run.items)


#: How many more bits the first layer and the biases get by default (see :func:`tensor_bits`).
FINE_EXTRA_BITS = 4


def tensor_bits(model: INRModel, bits: int, fine_bits: int) -> dict[str, int]:
    """Bits of each parameter: ``fine_bits`` for the first layer's tensors and every bias, ``bits``
    for the rest.

    Why: quantising one tensor at a time at 6 bits (MINR, width 32, two Kodak photos at 96 px,
    29.7 dB in float32), the first layer's bias cost 3.3 dB and its weight 1.4 dB, every other
    tensor at most 0.2 dB; the first layer sets every frequency (SIREN multiplies it by omega_0 = 30),
    so its error becomes phase error everywhere. They are 3 x width numbers per item, and the
    biases width per layer: a few percent of the rate.
    """
    first = {d.name for d in getattr(model, "layer_defs", ()) if d.position == "first"}
    out = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        fine = parts[-1] == "bias" or (len(parts) >= 3 and parts[1] in first)
        out[name] = fine_bits if fine else bits
    return out


def check_bits(bits: int, name: str = "bits") -> int:
    """``bits`` as an ``int`` from :data:`MIN_BITS` to :data:`MAX_BITS` (any whole-number type)."""
    return whole_number(bits, name, MIN_BITS, MAX_BITS)


def compress(
    run_dir: str | Path,
    output: str | Path,
    *,
    bits: int = 8,
    per_channel: bool = False,
    fine_bits: int | None = None,
    qat_steps: int = 0,
    qat_lr: float | None = None,
    device: str = "cpu",
    measure: bool = True,
    force: bool = False,
    on_note: Callable[[str], None] | None = None,
    items: Sequence[Item] | None = None,
) -> CompressResult:
    """Quantise every parameter of a finished run to ``bits`` and code it into ``output`` (.inrz).

    ``per_channel`` gives each output channel of a weight its own step. ``fine_bits`` (default
    ``bits + 4``, at most 16) are the bits of the few, sensitive tensors: the first layer's weight
    and bias (SIREN's first layer sets every frequency, scaled by omega_0) and every bias
    (see :func:`tensor_bits`). ``qat_steps`` > 0 first fine-tunes the model through its own
    quantisation (:mod:`inrkit.codec.qat`) on the run's data, at ``qat_lr`` (default: the run's learning
    rate) on ``device``, and keeps the weights whose rounding fits the data best, the start
    included. With ``measure``, the run's data is loaded (its config's ``data``) and both models
    are scored on it: PSNR before (the run's float model) and after (the file's).
    ``items`` are the run's items, already loaded. An existing ``output`` is replaced only with
    ``force``.
    """
    bits = check_bits(bits)
    fine = check_bits(min(MAX_BITS, bits + FINE_EXTRA_BITS) if fine_bits is None else fine_bits, "fine_bits")
    qat_steps = whole_number(qat_steps, "qat_steps", 0, MAX_STEPS)
    if qat_lr is not None and not (isinstance(qat_lr, (int, float)) and 0 < qat_lr < 1e3):
        raise ConfigError(f"qat_lr must be a positive number (got {qat_lr!r})")
    target = Path(output)
    if target.suffix.lower() != SUFFIX:
        raise ConfigError(f"-o {target}: a compressed run is written as {SUFFIX}; use a name ending in {SUFFIX}")
    if target.is_dir():
        raise ConfigError(f"-o {target} is a folder; give a file name ending in {SUFFIX}")
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; nothing was written (use --force to replace it)")
    run = Run(run_dir)
    if run.metrics is None:
        raise ConfigError(f"{run_dir} is not finished (no metrics.json); compress a finished run")
    model = run.model()
    resolved = ResolvedRun(run.config)
    encoded_from = run.metadata.get("encoded_from")
    note = None
    if (measure or qat_steps) and items is None:
        items, note = _run_items(run, resolved)
        if items is None and qat_steps:
            raise ConfigError(f"quantisation-aware fine-tuning needs the run's data: {note}")
    before = evaluate(model, items, resolved.signal, torch.device("cpu")) if measure and items is not None else None
    allocation = tensor_bits(model, bits, fine)
    steps, tuning = None, None
    if qat_steps:
        from inrkit.codec.qat import LR_DIVISOR, finetune, fixed_steps
        from inrkit.devices import resolve_device

        assert items is not None
        fitted = [name for name, p in model.items.named_parameters() if not p.requires_grad]
        if fitted:
            raise ConfigError(
                f"quantisation-aware fine-tuning trains every per-item parameter with Adam, but sharing "
                f"{run.config.sharing.name!r} fits items.{fitted[0]} itself; compress it without --qat-steps"
            )
        if encoded_from is not None:
            model.shared.requires_grad_(False)  # the shared layers are the decoder the items were encoded against
        steps = fixed_steps(model, allocation, per_channel)
        lr = qat_lr if qat_lr is not None else run.metrics.lr / LR_DIVISOR
        tuning = finetune(model, [resolved.signal.train_view(it) for it in items], allocation, steps, n_steps=qat_steps,
                          lr=lr, device=resolve_device(device), seed=run.config.train.seed)
        model.to("cpu")
    sizes = write(target, model.state_dict(), allocation, run.metadata, len(run.items), bits=bits, per_channel=per_channel,
                  steps=steps)
    if target.parent.resolve() == run.path.resolve():  # into the run folder: its SHA256SUMS lists it
        files.write_checksums(run.path, layout.checksummed_files(run.path))
    result = CompressResult(target, bits, per_channel, Rate.of(sizes, item_pixels(run)), fine_bits=fine, qat_steps=qat_steps,
                            qat_kept_step=None if tuning is None else tuning.kept_step,
                            encoded_from=encoded_from if isinstance(encoded_from, str) else None)
    if not measure:
        return result
    if items is None or before is None:
        result.note = f"quality not measured: {note}"
        if on_note is not None:
            on_note(result.note)
        return result
    after = evaluate(CompressedRun(result.path).model(), items, resolved.signal, torch.device("cpu"))
    result.psnr_before = before.summary("psnr")[0]
    result.psnr_after, result.ssim_after = after.summary("psnr")[0], after.summary("ssim")[0]
    result.ms_ssim_after, result.psnr_of_mean_mse_after = after.summary("ms_ssim")[0], after.psnr_of_mean_mse()
    result.item_psnr_after = [it.psnr for it in after.items]
    return result


def _run_items(run: Run, resolved: ResolvedRun) -> tuple[list[Item] | None, str | None]:
    """The run's items loaded again from its config's data, or ``None`` and why not."""
    from inrkit.runs.fit import load_items

    try:
        items = load_items(resolved)
    except InrkitError as exc:
        return None, f"the run's data could not be loaded ({exc})"
    if [it.name for it in items] != run.item_names:
        return None, "the run's data no longer holds the items it was trained on"
    return items, None


def summary(result: CompressResult) -> list[str]:
    """The report ``inrkit compress`` prints."""
    r = result.rate
    lines = [
        f"{result.path}: {r.bytes:,} bytes for {r.pixels:,} pixels = {r.bpp:.4f} bpp "
        f"({result.bits} bits, first layer and biases {result.fine_bits}{', per channel' if result.per_channel else ''})",
        f"  header {r.part(r.header_bytes):.4f} bpp ({r.header_bytes:,} B), shared {r.part(r.shared_bytes):.4f} bpp "
        f"({r.shared_bytes:,} B), items {r.part(sum(r.item_bytes)):.4f} bpp ({sum(r.item_bytes):,} B, "
        f"{sum(r.item_bytes) / max(len(r.item_bytes), 1):,.0f} B each)",
    ]
    if r.shared_bytes:
        known = (f"these items were encoded against the shared layers of {result.encoded_from}: "
                 if result.encoded_from else "")
        lines.append(f"  {known}{r.bpp_known_decoder:.4f} bpp per item with the shared layers as a known decoder, "
                     f"{r.bpp:.4f} bpp with them in the file")
    if result.psnr_before is not None and result.psnr_after is not None:
        how = (f" (after {result.qat_steps} steps of quantisation-aware fine-tuning, the weights of step "
               f"{result.qat_kept_step} kept)" if result.qat_steps else "")
        lines.append(f"  PSNR {result.psnr_before:.2f} dB before quantisation, {result.psnr_after:.2f} dB after{how} "
                     f"({result.psnr_after - result.psnr_before:+.2f} dB)")
        after = [f"PSNR of the mean MSE {result.psnr_of_mean_mse_after:.2f} dB"] if result.psnr_of_mean_mse_after is not None else []
        after += [f"{name} {value:.4f}" for name, value in (("SSIM", result.ssim_after), ("MS-SSIM", result.ms_ssim_after)) if value is not None]
        if after:
            lines.append("  after: " + ", ".join(after))
    elif result.note:
        lines.append(f"  {result.note}")
    return lines

"""A run folder, written (:class:`RunFolder`) and read back (:class:`Run`).

The folder holds ``config.json`` (the run's full configuration), ``checkpoint.safetensors``
(weights and metadata, see :mod:`inrkit.runs.checkpoint`), ``metrics.json``
(:class:`~inrkit.results.RunMetrics`), ``recon/`` (each item's reconstruction), ``plots/``, ``SHA256SUMS`` (the checkpoint's SHA-256)
and, while a run is unfinished, ``resume.pt``. Writes are atomic and never overwrite a finished
run; the checkpoint and metrics are written before anything that may fail on a full disk or a bad
writer, so a late failure never costs the trained model, and when even the checkpoint cannot be
written the trained model is kept as a snapshot to finish from with ``--resume``.

A run folder read back is untrusted data: :class:`Run` checks the checkpoint's SHA-256, its
metadata against a schema and its tensors against the model its config builds before using any
of it, and item names from it never choose where a file is written.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inrkit import files
from inrkit.config import ResolvedRun, RunConfig
from inrkit.devices import resolve_device
from inrkit.errors import CheckpointError, ConfigError, DataError, StorageError, format_validation_error
from inrkit.factory import build_model, run_spec
from inrkit.interfaces import INRModel, Item, Signal
from inrkit.limits import (
    MEMORY_CHECK_ENV,
    PIXELS_ENV,
    available_memory,
    check_pixels,
    count_pixels,
    format_bytes,
    is_whole,
    memory_check_enabled,
    pixel_limit,
)
from inrkit.nn import check_state
from inrkit.plugins import PluginRegistry, get_registry
from inrkit.results import RunMetrics
from inrkit.runs import checkpoint, layout
from inrkit.training.perf import matmul_precision
from inrkit.training.points import auto_chunk_rows, render_into


class RunFolder:
    """The writer of one run folder (rank 0 of a distributed run holds the only one)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | Path | None, label: str, config: RunConfig) -> RunFolder:
        """A new (or empty) folder with ``config.json``; an existing non-empty one is refused."""
        folder = cls(layout.new_run_folder(out, label))
        files.write_json(folder.path / layout.CONFIG_FILE, config.model_dump(mode="json"))
        return folder

    @classmethod
    def reopen(cls, path: str | Path) -> RunFolder:
        """An unfinished run's folder, to continue writing into after ``--resume``."""
        return cls(Path(path))

    def save_snapshot(self, state: dict[str, Any]) -> Path:
        """A resumable training snapshot (``resume.pt``); returns its path."""
        path = self.path / layout.RESUME_FILE
        checkpoint.save_resume(path, state)
        return path

    def write_results(
        self,
        model: INRModel,
        metadata: Mapping[str, Any],
        metrics: RunMetrics,
        signal: Signal,
        items: Sequence[Item],
        reconstructions: Sequence[np.ndarray],
        *,
        plots: bool = False,
        recon: bool = True,
        started: float | None = None,
        final_snapshot: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """Checkpoint, ``SHA256SUMS``, ``metrics.json``, figures and reconstructions, in that order.

        The snapshot is removed once the metrics are written: the run is finished. A figure that
        cannot be drawn is a warning; reconstructions that cannot be written are one
        :class:`~inrkit.errors.DataError` saying that the checkpoint and metrics are saved.
        Without ``recon`` no per-item reconstructions are written (``inrkit decode RUN --all``
        renders them later): at 10^5 small items they cost more time than the checkpoint.
        When the checkpoint or the metrics cannot be written (a full disk), ``final_snapshot()``
        (the finished training as a snapshot) is saved instead where possible, so that
        ``--resume`` writes the results later, and the :class:`~inrkit.errors.StorageError` says so.
        ``started`` (a ``time.perf_counter()`` value) sets ``metrics.total_seconds``.
        """
        import time

        try:
            checkpoint.save_checkpoint(self.path / layout.CHECKPOINT_FILE, model, metadata)
            files.write_checksums(self.path, layout.checksummed_files(self.path))
            if started is not None:
                metrics.total_seconds = time.perf_counter() - started
            files.write_json(self.path / layout.METRICS_FILE, metrics.to_dict())
        except StorageError as exc:
            raise StorageError(f"{exc}. {self._keep_trained_model(final_snapshot)}") from None
        (self.path / layout.RESUME_FILE).unlink(missing_ok=True)  # finished: the snapshot is obsolete
        if plots:
            try:
                from inrkit.runs.plots import shown_items, write_run_plots
                from inrkit.training.evaluate import select

                shown = shown_items(len(items))  # a sample of a large collection, rendered alone
                write_run_plots(
                    self.path / "plots", metrics, [items[i].name for i in shown], [signal.eval_view(items[i]) for i in shown],
                    select(reconstructions, shown), [signal.reference_views(items[i]) for i in shown],
                )
            except Exception as exc:  # noqa: BLE001 - a figure must never cost the run
                warnings.warn(f"could not draw the plots: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        if not recon:
            return
        try:
            signal.save_all(items, reconstructions, self.path / layout.RECON_DIR)
        except Exception as exc:  # noqa: BLE001 - any writer failure becomes one message
            raise DataError(
                f"could not write the reconstructions into {self.path / layout.RECON_DIR}: "
                f"{type(exc).__name__}: {exc}. The checkpoint and metrics.json are saved; "
                f"'inrkit decode {self.path} --all -o DIR' renders the items again"
            ) from None

    def _keep_trained_model(self, final_snapshot: Callable[[], dict[str, Any]] | None) -> str:
        """After the checkpoint could not be written: save the finished training as a snapshot
        (``resume.pt``) if possible; returns what the user can do."""
        for leftover in (layout.CHECKPOINT_FILE, files.CHECKSUMS_FILE, layout.METRICS_FILE):
            (self.path / leftover).unlink(missing_ok=True)  # the run is unfinished: no half set of results
        if final_snapshot is not None:
            try:
                self.save_snapshot(final_snapshot())
            except StorageError:
                pass
            else:
                return (
                    f"The trained model is saved as a snapshot ({self.path / layout.RESUME_FILE}); free some space "
                    f"and run 'inrkit run --resume {self.path}' to write the results"
                )
        if (self.path / layout.RESUME_FILE).is_file():
            return (
                f"The last snapshot ({self.path / layout.RESUME_FILE}) is kept; free some space and run "
                f"'inrkit run --resume {self.path}' to continue from it"
            )
        return "No snapshot could be saved either; free some space and run again"


class Run:
    """A finished run folder: its config, metrics and checkpoint, decoded one item at a time.

    Opening one checks what it reads: the checkpoint's SHA-256 against ``SHA256SUMS`` (when the
    run recorded one), its metadata against :class:`~inrkit.runs.checkpoint.CheckpointInfo`, its config
    against :class:`~inrkit.config.RunConfig` and its tensor keys against their grammar. Any
    mismatch is one :class:`~inrkit.errors.CheckpointError` naming the file.
    """

    def __init__(self, path: str | Path, registry: PluginRegistry | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"run folder not found: {self.path}")
        self.checkpoint = self.path / layout.CHECKPOINT_FILE
        if not self.checkpoint.is_file():
            raise CheckpointError(f"checkpoint not found: {self.checkpoint}")
        self.metadata = checkpoint.read_metadata(self.checkpoint)
        #: The files whose SHA-256 was checked (empty for a run written before inrkit recorded them).
        self.verified = files.verify_checksums(self.path, required=[layout.CHECKPOINT_FILE])
        self._read_metadata("metadata")
        checkpoint.check_layout(self.checkpoint, len(self.items))
        self._registry = registry

    def _read_metadata(self, where: str) -> None:
        """``config`` and ``items`` from ``self.metadata``, validated; errors name ``self.checkpoint``."""
        info = checkpoint.validate_metadata(self.checkpoint, self.metadata)
        try:
            self.config = RunConfig.model_validate(info.config)
        except Exception as exc:  # noqa: BLE001 - pydantic's error, or a validator's
            reason = format_validation_error(exc) if hasattr(exc, "errors") else str(exc)
            raise CheckpointError(f"{self.checkpoint}: invalid config in the {where}: {reason}") from None
        self.items: list[dict[str, Any]] = [it.model_dump(exclude_none=True) for it in info.items]

    @property
    def item_names(self) -> list[str]:
        return [it["name"] for it in self.items]

    @property
    def metrics(self) -> RunMetrics | None:
        """``metrics.json`` (``None`` while the run is unfinished)."""
        path = self.path / layout.METRICS_FILE
        return RunMetrics.from_dict(files.read_json(path), str(path)) if path.is_file() else None

    def item_index(self, item: str | int) -> int:
        """Index of an item given by name or index (a numeric string counts as an index).

        An index must be a whole number (``2``, ``numpy.int64(2)``, ``2.0``, ``"2"``; not ``0.5``
        or ``True``): anything else is a :class:`~inrkit.errors.ConfigError`, an index or name
        that is not in the run a :class:`~inrkit.errors.DataError`.
        """
        if isinstance(item, str):
            if item in self.item_names:
                return self.item_names.index(item)
            index = int(item) if item.strip().isdigit() and len(item) < 12 else -1
        elif is_whole(item):
            index = int(item)
        else:
            raise ConfigError(f"an item is a name or a whole-number index, not {item!r} ({type(item).__name__})")
        if 0 <= index < len(self.items):
            return index
        shown = ", ".join(repr(n) for n in self.item_names[:10]) + (" ..." if len(self.items) > 10 else "")
        raise DataError(f"item {item!r} is not in run {self.path}; items are 0..{len(self.items) - 1}: {shown}")

    def _load(self, model: INRModel, state: dict[str, torch.Tensor]) -> None:
        check_state(model.state_dict(), state, str(self.checkpoint))
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{self.checkpoint} does not match its own config: {str(exc).splitlines()[0][:300]}") from None

    def _read_state(self) -> dict[str, torch.Tensor]:
        """Every tensor, as the whole model's state dict."""
        return checkpoint.read_state(self.checkpoint)

    def _read_item_state(self, index: int) -> dict[str, torch.Tensor]:
        """The shared tensors and item ``index``'s, as a one-item model's state dict."""
        return checkpoint.read_item_state(self.checkpoint, index)

    def _whole_model(self) -> INRModel:
        """The run's model for every item as its config builds it, untrained (under
        ``torch.device("meta")``: its layout only, nothing allocated)."""
        resolved = ResolvedRun(self.config, self._registry or get_registry())
        spec = run_spec(self.config, resolved.signal.in_dim, [it["shape"] for it in self.items], int(self.items[0]["channels"]))
        return build_model(resolved.activation, resolved.sharing, spec)

    def _build(self, build: Callable[[], INRModel]) -> INRModel:
        """``build()``, after its size was checked against the memory this machine has: the
        config is read from a file, and a few bytes of it may declare gigabytes of weights. The
        model is first built on the meta device (nothing allocated); the model and the state read
        for it must both fit. ``INRKIT_MEMORY_CHECK=0`` skips the check."""
        if memory_check_enabled():
            with torch.device("meta"):
                layout_only = build()
            need = 2 * sum(t.numel() * t.element_size() for t in layout_only.state_dict().values())
            have = available_memory()
            if have is not None and need > have:
                raise ConfigError(
                    f"{self.checkpoint}: its config declares a model of {format_bytes(need // 2)} "
                    f"({self.config.model.width} wide, {self.config.model.layers} layers); reading it needs about "
                    f"{format_bytes(need)} of memory and this machine has {format_bytes(have)} available "
                    f"({MEMORY_CHECK_ENV}=0 skips this check)"
                )
        return build()

    def model(self, device: str | torch.device = "cpu") -> INRModel:
        """The whole trained model, every item's tensors included (to evaluate or fine-tune it in
        one's own code; :meth:`model_for` reads one item only)."""
        model = self._build(self._whole_model)
        self._load(model, self._read_state())
        return model.to(resolve_device(device) if str(device) != "cpu" else torch.device("cpu"))

    def model_for(self, item: str | int, device: str | torch.device = "cpu") -> INRModel:
        """A one-item model holding the shared tensors and this item's tensors only."""
        index = self.item_index(item)
        resolved = ResolvedRun(self.config, self._registry or get_registry())
        info = self.items[index]
        spec = run_spec(
            self.config, resolved.signal.in_dim, [info["shape"]], int(info["channels"]),
            item_indices=(index,), run_item_shapes=tuple(tuple(it["shape"]) for it in self.items),
        )
        model = self._build(lambda: build_model(resolved.activation, resolved.sharing, spec))
        self._load(model, self._read_item_state(index))
        return model.to(resolve_device(device) if str(device) != "cpu" else torch.device("cpu"))

    def output_shape(
        self,
        item: str | int,
        *,
        size: Sequence[int] | None = None,
        scale: float | None = None,
        max_pixels: int | None = None,
    ) -> tuple[int, ...]:
        """The spatial shape :meth:`decode` renders: the item's own, ``size``, or ``scale`` times
        the item's own; checked against the pixel limit (``max_pixels``, else
        :func:`~inrkit.limits.pixel_limit`) before anything is allocated."""
        info = self.items[self.item_index(item)]
        base = tuple(int(s) for s in info.get("eval_shape", info["shape"]))
        if size is not None and scale is not None:
            raise ConfigError("give a size or a scale, not both")
        if size is not None:
            shape = _whole_sizes(size, len(base))
        elif scale is not None:
            if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale > 0):
                raise ConfigError(f"scale must be a positive finite number (got {scale!r})")
            limit = pixel_limit(max_pixels)
            # Compare in logarithms before multiplying out: 1e308 ** 2 overflows a float, and
            # round(1e308 * 8) is an integer of 300 digits.
            if math.log(count_pixels(base)) + len(base) * math.log(float(scale)) > math.log(2 * limit):
                factor = (limit / count_pixels(base)) ** (1 / len(base))
                raise ConfigError(
                    f"scale {scale:g} makes item {info['name']!r} ({'x'.join(map(str, base))}) larger than the limit of "
                    f"{limit:,} pixels; at most about {factor:.4g} fits ({_raise_hint()})"
                )
            shape = tuple(max(1, round(s * float(scale))) for s in base)
        else:
            shape = base
        check_pixels(shape, f"decoding item {info['name']!r}", limit=max_pixels, hint=_raise_hint())
        return shape

    def decode(
        self,
        item: str | int,
        *,
        size: Sequence[int] | None = None,
        scale: float | None = None,
        device: str | torch.device = "cpu",
        max_pixels: int | None = None,
    ) -> np.ndarray:
        """Render one item at its own size, a ``scale`` of it, or an explicit spatial ``size``.

        Returns ``(*size, channels)`` float32 in [0, 1]. Points are rendered in chunks straight
        into the returned array, so a render needs little memory beyond its result. Sizes are
        whole positive numbers; a render of more than the pixel limit
        (:data:`~inrkit.limits.MAX_PIXELS` unless ``max_pixels`` or ``INRKIT_MAX_PIXELS`` says
        otherwise) is refused with a :class:`~inrkit.errors.ConfigError` before anything is allocated.
        """
        shape = self.output_shape(item, size=size, scale=scale, max_pixels=max_pixels)
        channels = int(self.items[self.item_index(item)]["channels"])
        model = self.model_for(item, device)
        device = next(model.parameters()).device
        try:
            out = np.empty((count_pixels(shape), channels), dtype=np.float32)
        except MemoryError:
            raise ConfigError(f"not enough memory to hold a {'x'.join(map(str, shape))} render of {channels} channel(s)") from None
        with matmul_precision(device, self.config.train.tf32):  # as the run was trained and scored
            render_into(model, shape, out, auto_chunk_rows(device), device)
        return out.reshape(*shape, channels)


def _raise_hint() -> str:
    return f"inrkit decode --max-pixels N, max_pixels=N in Python, or {PIXELS_ENV} raises the limit"


def _whole_sizes(size: Any, dims: int) -> tuple[int, ...]:
    """``size`` as ``dims`` whole positive numbers; a :class:`~inrkit.errors.ConfigError` for
    anything else (a string, fractions, booleans, the wrong count)."""
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence):
        raise ConfigError(f"size must be a sequence of {dims} positive whole numbers, e.g. (256, 256) (got {size!r})")
    if not all(is_whole(s) for s in size):
        raise ConfigError(f"size must be {dims} positive whole numbers (got {tuple(size)!r})")
    shape = [int(s) for s in size]
    if len(shape) != dims or any(s <= 0 for s in shape):
        raise ConfigError(f"size must be {dims} positive whole numbers (got {tuple(size)!r})")
    return tuple(shape)


def verify_inrz(path: str | Path, registry: PluginRegistry | None = None) -> dict[str, Any]:
    """Check an ``.inrz`` file without decoding it: its header (signature, version, CRC-32,
    config and items), every tensor it declares against the model its config builds (on the meta
    device), and every section's CRC-32. Returns what was checked; any problem is one
    :class:`~inrkit.errors.CheckpointError`."""
    run = CompressedRun(path, registry)
    sections = run.file.check_sections()
    return {
        "file": str(run.path),
        "items": len(run.items),
        "sections": sections,
        "bytes": run.path.stat().st_size,
        "config": {"activation": run.config.activation.name, "sharing": run.config.sharing.name, "signal": run.config.signal.name},
    }


def verify(path: str | Path, registry: PluginRegistry | None = None) -> dict[str, Any]:
    """Check a run folder or an ``.inrz`` file (:func:`verify_inrz`) without decoding it. For a
    folder: its SHA-256 sums, checkpoint metadata, config, tensor keys and every tensor's shape
    against the model its config builds (on the meta device: nothing is allocated),
    ``metrics.json`` if present, and every ``.inrz`` file it holds. Returns what was checked;
    any problem is one :class:`~inrkit.errors.CheckpointError`."""
    from inrkit.codec.inrz import is_inrz

    if Path(path).is_file():
        if not is_inrz(path):
            raise CheckpointError(f"{path} is neither a run folder nor an .inrz file")
        return verify_inrz(path, registry)
    run = Run(path, registry)
    with torch.device("meta"):
        model = run._whole_model()
    handle, _ = checkpoint.open_checkpoint(run.checkpoint)
    shapes: dict[str, torch.Tensor] = {}
    rows: dict[str, list[int]] = {}
    keys = list(handle.keys())
    for key in keys:
        index, rest = checkpoint.parse_key(key, run.checkpoint)
        view = handle.get_slice(key)
        kind = view.get_dtype()
        dtype = torch.complex64 if kind.startswith("C") else torch.float32 if kind in ("F16", "BF16", "F32", "F64") else torch.int64
        shape = list(view.get_shape())
        if index is None:
            shapes[key] = torch.empty(shape, dtype=dtype, device="meta")
            continue
        first = rows.setdefault(rest, shape)
        if first != shape:
            raise CheckpointError(f"{run.checkpoint}: tensor {key!r} has shape {tuple(shape)}, item 0's has {tuple(first)}")
        shapes[f"items.{rest}"] = torch.empty([len(run.items), *shape], dtype=dtype, device="meta")
    check_state(model.state_dict(), shapes, str(run.checkpoint))
    metrics = run.metrics
    compressed = [verify_inrz(p, registry)["file"] for p in layout.checksummed_files(run.path) if p.suffix == ".inrz"]
    return {
        "run": str(run.path),
        "checksums": run.verified,
        "inrz": compressed,
        "items": len(run.items),
        "tensors": len(keys),
        "finished": metrics is not None,
        "config": {"activation": run.config.activation.name, "sharing": run.config.sharing.name, "signal": run.config.signal.name},
    }


class CompressedRun(Run):
    """A compressed run (an ``.inrz`` file from ``inrkit compress``) opened like a run folder:
    its config and items, decoded from the file alone; no metrics. Each section's CRC-32 is
    checked as it is read (decoding one item reads the shared section and that item's only)."""

    def __init__(self, path: str | Path, registry: PluginRegistry | None = None) -> None:
        from inrkit.codec.inrz import InrzFile

        self.path = Path(path)
        self.file = InrzFile(self.path)
        self.checkpoint = self.path
        self.metadata = self.file.metadata
        self.verified = []
        self._read_metadata("header")
        if len(self.items) != self.file.n_items:
            raise CheckpointError(f"{self.path}: the header lists {len(self.items)} items but holds {self.file.n_items} sections")
        self._registry = registry
        self._check_layout()

    def _check_layout(self) -> None:
        """Every tensor the file declares is one the config's model has, with its shape (the model
        built on the meta device): a file's shapes never size an allocation on their own."""
        with torch.device("meta"):
            expected = {k: list(v.shape) for k, v in self._whole_model().state_dict().items()}
        declared = {t.key: list(t.shape) for t in self.file.header.shared}
        declared.update({f"items.{t.key}": [len(self.items), *t.shape] for t in self.file.header.item})
        if declared != expected:
            wrong = sorted(k for k in set(declared) | set(expected) if declared.get(k) != expected.get(k))
            raise CheckpointError(
                f"{self.path}: its tensors do not match the model its config builds ({', '.join(wrong[:4])}"
                f"{' ...' if len(wrong) > 4 else ''}); the file is corrupted or was written by another version"
            )

    @property
    def metrics(self) -> RunMetrics | None:
        return None

    def _read_state(self) -> dict[str, torch.Tensor]:
        return self.file.state()

    def _read_item_state(self, index: int) -> dict[str, torch.Tensor]:
        return self.file.item_state(index)


def load(path: str | Path, registry: PluginRegistry | None = None) -> Run:
    """Open a run folder written by :func:`inrkit.fit`, or an ``.inrz`` file written by
    :func:`inrkit.compress` (a :class:`CompressedRun`)."""
    from inrkit.codec.inrz import SUFFIX, is_inrz

    if is_inrz(path) or (Path(path).is_file() and Path(path).suffix.lower() == SUFFIX):
        return CompressedRun(path, registry)
    if Path(path).is_file():
        raise CheckpointError(f"{path} is a file but not an .inrz compressed run; give a run folder or an .inrz file")
    return Run(path, registry)

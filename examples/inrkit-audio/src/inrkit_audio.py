"""Audio: 16-bit PCM WAV files as 1-D signals, read and written with the standard library's ``wave``.

One item per file, data ``(samples, channels)``. Samples ``s`` in [-32768, 32767] map affinely
onto [0, 1] as ``x = (s + 32768) / 65535``; writing inverts it, ``s = round(65535 x) - 32768``,
so a file read and written back keeps every sample (one quantisation step is 1/65535). The
sample rate is kept in ``item.meta["sample_rate"]`` and written back with the reconstruction.

Sources are files, folders (their ``.wav`` files) or globs; names are the file stems, made unique.
There are no built-in samples. Options: ``max_seconds`` keeps the start of each file;
``channels="mono"`` averages the channels, ``"auto"`` keeps them (the files must then agree).
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

import inrkit
from inrkit.errors import DataError
from inrkit.interfaces import Item, PluginOptions, Signal
from inrkit.sources import expand, make_names_unique

#: ``x = (s + OFFSET) / FULL_SCALE`` maps int16 samples onto [0, 1] exactly end to end.
OFFSET = 32768
FULL_SCALE = 65535
#: Sample rate written for items that do not carry one in their meta.
DEFAULT_RATE = 16000


def to_unit(samples: np.ndarray) -> np.ndarray:
    """int16 samples to float32 in [0, 1]."""
    return ((samples.astype(np.float32) + OFFSET) / FULL_SCALE).astype(np.float32)


def to_int16(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped; NaN as silence) back to int16, the exact inverse of :func:`to_unit`."""
    x = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.5), 0.0, 1.0)
    return (np.round(x * FULL_SCALE) - OFFSET).astype(np.int16)


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """``(frames, channels)`` int16 samples and the sample rate; a :class:`DataError` naming the file otherwise."""
    try:
        with wave.open(path, "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            if width != 2:
                raise DataError(f"{path}: {8 * width}-bit WAV; the audio signal reads 16-bit PCM only")
            raw = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as exc:  # no RIFF header, a compressed format, a truncated file
        raise DataError(f"{path}: not a 16-bit PCM WAV file ({str(exc) or 'empty or truncated'})") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    samples = np.frombuffer(raw, dtype="<i2")
    samples = samples[: samples.size - samples.size % channels]  # a truncated last frame
    if samples.size == 0:
        raise DataError(f"{path}: the WAV file holds no samples")
    return samples.reshape(-1, channels), rate


def write_wav(path: Path, values: np.ndarray, rate: int) -> Path:
    """Write ``(samples, channels)`` values in [0, 1] as a 16-bit PCM WAV."""
    frames = to_int16(values[:, None] if values.ndim == 1 else values)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(frames.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(frames.astype("<i2").tobytes())
    return path


class AudioSignal(Signal):
    name = "audio"
    in_dim = 1

    class Options(PluginOptions):
        #: Keep only the first seconds of each file; ``None`` keeps all of it.
        max_seconds: float | None = pydantic.Field(None, gt=0)
        #: ``auto`` keeps the files' channels (they must agree); ``mono`` averages them.
        channels: Literal["auto", "mono"] = "auto"

    options: Options

    def load(self, sources: Sequence[str]) -> list[Item]:
        if not sources:
            raise DataError("the audio signal has no built-in samples: give WAV files, folders or globs (--data)")
        paths = [path for source in sources for path in expand(source, {".wav"}, "WAV files")]
        items = [self._item(path) for path in paths]
        counts = {item.channels for item in items}
        if len(counts) > 1:
            by_count = ", ".join(f"{item.meta['source']}: {item.channels}" for item in items)
            raise DataError(f"the WAV files differ in channels ({by_count}); set signal.channels=mono to mix them down")
        make_names_unique(items)
        return items

    def _item(self, path: str) -> Item:
        samples, rate = read_wav(path)
        meta: dict[str, Any] = {"source": path, "sample_rate": rate, "source_channels": samples.shape[1]}
        if self.options.max_seconds is not None:
            samples = samples[: max(1, int(self.options.max_seconds * rate))]
        data = to_unit(samples)
        if self.options.channels == "mono":
            data = data.mean(axis=1, keepdims=True, dtype=np.float32)
        return Item(name=Path(path).stem, data=data, meta=meta)

    def save(self, item: Item, reconstruction: np.ndarray, folder: Path) -> list[Path]:
        rate = int(item.meta.get("sample_rate", DEFAULT_RATE))
        return [write_wav(folder / f"{item.name}.wav", reconstruction, rate)]


@inrkit.hookimpl
def inrkit_register_signals() -> list[type[Signal]]:
    return [AudioSignal]

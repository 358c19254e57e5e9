"""Video: every frame of a clip (or every image of a folder of frames) is one item.

With ``--sharing minr`` the frames share the intermediate layers, as in the paper's video
experiment. Files are read with imageio's PyAV plugin (any container and codec FFmpeg reads).
``start``, ``frames`` and ``stride`` pick frames ``start, start + stride, ...``; ``max_side``
shrinks them as the image signal does. Reconstructions are written as ``frames/<name>.png`` and
as ``video.mp4`` (H.264 at the source's frame rate; odd sizes are padded by one pixel).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydantic

import inrkit
from inrkit.errors import DataError
from inrkit.files import atomic_write
from inrkit.images import (
    IMAGE_SUFFIXES,
    read_pixels,
    shrink_to_max_side,
    to_channels,
    to_pixels,
    write_png,
)
from inrkit.interfaces import Item, PluginOptions, Signal
from inrkit.limits import available_memory, check_pixels, check_regular_file, format_bytes, memory_check_enabled

DEFAULT_FPS = 25.0


class VideoSignal(Signal):
    name = "video"
    in_dim = 2

    class Options(PluginOptions):
        #: Index of the first frame.
        start: int = pydantic.Field(0, ge=0)
        #: Number of frames; ``None`` takes all from ``start``.
        frames: int | None = pydantic.Field(None, gt=0)
        #: Take every ``stride``-th frame.
        stride: int = pydantic.Field(1, gt=0)
        #: Longer side in pixels after loading (antialiased downscale); ``None`` keeps the size.
        max_side: int | None = pydantic.Field(None, gt=0)

    options: Options

    def load(self, sources: Sequence[str]) -> list[Item]:
        if len(sources) != 1:
            raise DataError(
                "the video signal takes exactly one source: a video file or a folder of frames "
                f"(got {len(sources)})"
            )
        source = sources[0]
        path = Path(source)
        if path.is_dir():
            frames, fps = self._folder_frames(path)
        elif os.path.lexists(path):
            check_regular_file(path, "video")  # a named pipe or a device would block
            frames, fps = self._file_frames(path)
        else:
            raise DataError(f"no such file or folder: {source}")
        items = []
        for index, frame in frames:
            data = shrink_to_max_side(frame, self.options.max_side)
            items.append(Item(f"frame{index:05d}", data, {"source": source, "frame": index, "fps": fps, "bit_depth": 8}))
        return items

    def _indices(self, total: int, source: str) -> list[int]:
        o = self.options
        if o.start >= total:
            raise DataError(f"start={o.start} is past the end of {source} ({total} frames)")
        available = range(o.start, total, o.stride)
        if o.frames is not None and o.frames > len(available):
            raise DataError(
                f"{source} has {total} frames: from frame {o.start} with stride {o.stride} there are "
                f"only {len(available)}, not frames={o.frames}"
            )
        return list(available)[: o.frames]

    def _folder_frames(self, folder: Path) -> tuple[list[tuple[int, np.ndarray]], float]:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"folder {folder} holds no frames (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        frames = []
        for index in self._indices(len(files), str(folder)):
            frames.append((index, to_channels(read_pixels(files[index]), "rgb", {})))
        return frames, DEFAULT_FPS

    def _file_frames(self, path: Path) -> tuple[list[tuple[int, np.ndarray]], float]:
        import imageio.v3 as iio

        try:
            props = iio.improps(path, plugin="pyav")
            meta = iio.immeta(path, plugin="pyav")
            total = int(props.n_images) if props.n_images else int(props.shape[0])
        except Exception as exc:  # noqa: BLE001 - every decoder failure means "not a video we can read"
            raise DataError(f"cannot read video {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if total <= 0:
            raise DataError(f"cannot read video {path}: no video frames found (is it a video file?)")
        wanted = self._indices(total, str(path))
        height, width = int(props.shape[-3]), int(props.shape[-2])
        check_pixels((height, width), f"video {path}", error=DataError)
        need = len(wanted) * height * width * 3 * 4  # the decoded frames, as float32, before max_side
        have = available_memory()
        if memory_check_enabled() and have is not None and need > have:
            raise DataError(
                f"video {path}: {len(wanted)} frames of {width}x{height} need about {format_bytes(need)} of memory "
                f"once decoded, but {format_bytes(have)} is available; take fewer with signal.frames or "
                "signal.stride (INRKIT_MEMORY_CHECK=0 skips this estimate)"
            )
        keep = set(wanted)
        frames = []
        try:
            for index, frame in enumerate(iio.imiter(path, plugin="pyav")):
                if index in keep:
                    frames.append((index, np.asarray(frame, dtype=np.float32)[..., :3] / 255.0))
                if index >= wanted[-1]:
                    break
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"cannot decode video {path}: {exc}") from None
        if len(frames) != len(wanted):
            raise DataError(f"{path}: decoded {len(frames)} of the {len(wanted)} frames asked for (truncated file?)")
        return frames, float(meta.get("fps") or DEFAULT_FPS)

    def save(self, item: Item, reconstruction: np.ndarray, folder: Path) -> list[Path]:
        return [write_png(folder / "frames" / f"{item.name}.png", reconstruction)]

    def save_all(self, items: Sequence[Item], reconstructions: Sequence[np.ndarray], folder: Path) -> list[Path]:
        """Every frame as a PNG and, when they have one size, ``video.mp4``: one pass over the
        reconstructions (rendered on demand), keeping only 8-bit copies of the frames."""
        one_size = len({self.eval_view(it).shape for it in items}) == 1
        paths: list[Path] = []
        frames: list[np.ndarray] = []
        for item, reconstruction in zip(items, reconstructions, strict=True):
            paths += self.save(item, reconstruction, folder)
            if one_size:
                frames.append(frame_bytes(reconstruction))
        if items and one_size:
            paths.append(write_video(folder / "video.mp4", frames, float(items[0].meta.get("fps", DEFAULT_FPS))))
        return paths


def frame_bytes(frame: np.ndarray) -> np.ndarray:
    """A frame in [0, 1] as 8-bit values (an 8-bit frame as it is)."""
    return frame if frame.dtype == np.uint8 else to_pixels(frame)


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write frames (in [0, 1], or 8-bit) as H.264 (yuv420p needs even sizes: odd ones are edge-padded)."""
    import imageio.v3 as iio

    stack = np.stack([frame_bytes(f) for f in frames])
    if stack.shape[-1] == 1:
        stack = np.repeat(stack, 3, axis=-1)
    pad_h, pad_w = stack.shape[1] % 2, stack.shape[2] % 2
    if pad_h or pad_w:
        stack = np.pad(stack, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return atomic_write(path, lambda tmp: iio.imwrite(tmp, stack, plugin="pyav", codec="libx264", fps=fps))


@inrkit.hookimpl
def inrkit_register_signals() -> list[type[Signal]]:
    return [VideoSignal]

"""Size limits and the machine's resources, checked before anything large is allocated or written.

Every size that reaches an allocation is bounded here, so a typo or a hostile file is one clear
error instead of a process that swaps the machine to a halt:

- :data:`MAX_PIXELS` points per image (read or rendered), checked from an image file's header
  before decoding and from the requested size before rendering. ``INRKIT_MAX_PIXELS`` raises it
  for a whole process; ``inrkit decode --max-pixels`` (``max_pixels=`` in Python) for one render.
- :data:`MAX_WIDTH`, :data:`MAX_LAYERS` and :data:`MAX_STEPS` bound the configuration; within
  them, a fit's memory is estimated before the model is built and compared with what the machine
  has (:func:`available_memory`; ``INRKIT_MEMORY_CHECK=0`` turns the comparison off).
- every count a caller gives (bits, steps, widths) is a whole number within its bounds
  (:func:`whole_number`: any numeric type, ``numpy.int64(6)`` and ``6.0`` alike; never a bool).
- a run's files are estimated before training and compared with the free disk space
  (:func:`free_disk`), so a full disk is found before hours of training, not after.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from inrkit.errors import ConfigError, DataError, InrkitError

#: Points (pixels) an image may have, read or rendered: 100 megapixels, e.g. 10000 x 10000. A
#: rendered float32 RGB image of that size takes 1.2 GB; Pillow refuses files from 179 megapixels.
MAX_PIXELS = 100_000_000
#: Environment variable that replaces :data:`MAX_PIXELS` for the process.
PIXELS_ENV = "INRKIT_MAX_PIXELS"
#: Largest hidden width (a 16384-wide square layer holds a gigabyte of float32 weights).
MAX_WIDTH = 16384
#: Most linear layers of one MLP.
MAX_LAYERS = 256
#: Most training steps of one run.
MAX_STEPS = 10_000_000
#: Largest image side ``inrkit bench --size`` takes.
MAX_BENCH_SIDE = 16384
#: Largest JSON file inrkit reads from a run folder (``config.json``, ``metrics.json``).
MAX_JSON_BYTES = 64 * 2**20
#: Environment variable that turns the memory estimate's refusal off when set to ``0``.
MEMORY_CHECK_ENV = "INRKIT_MEMORY_CHECK"


def is_whole(value: object) -> bool:
    """A whole number of any numeric type (``2``, ``numpy.int64(2)``, ``2.0``), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or (math.isfinite(float(value)) and float(value).is_integer())


def whole_number(value: object, name: str, low: int, high: int) -> int:
    """``value`` as an ``int`` in ``[low, high]``: a whole number of any numeric type
    (:func:`is_whole`); a bool, a fraction, a string or anything out of range is a
    :class:`~inrkit.errors.ConfigError` naming ``name`` and the bounds."""
    if not is_whole(value) or not low <= int(value) <= high:  # type: ignore[call-overload]  # a Real here
        raise ConfigError(f"{name} must be a whole number from {low:,} to {high:,} (got {value!r})")
    return int(value)  # type: ignore[call-overload]


def pixel_limit(override: int | None = None) -> int:
    """The pixel limit in force: ``override``, else ``INRKIT_MAX_PIXELS``, else :data:`MAX_PIXELS`."""
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, int) or override <= 0:
            raise ConfigError(f"max_pixels must be a positive integer (got {override!r})")
        return override
    text = os.environ.get(PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{PIXELS_ENV}={text!r}: expected a positive integer number of pixels")
    return value


def count_pixels(shape: Sequence[int]) -> int:
    """The number of points of a spatial shape (exact: Python integers never overflow)."""
    return math.prod(int(s) for s in shape)


def check_pixels(
    shape: Sequence[int],
    what: str,
    *,
    limit: int | None = None,
    error: type[InrkitError] = ConfigError,
    hint: str | None = None,
) -> None:
    """Refuse a ``shape`` with more points than the pixel limit, naming ``what`` and how to raise it.
    A 2-D ``(height, width)`` shape is shown as ``WIDTHxHEIGHT``, as image sizes are written."""
    allowed = pixel_limit(limit)
    pixels = count_pixels(shape)
    if pixels > allowed:
        sides = [str(int(s)) for s in shape]
        size = "x".join(reversed(sides) if len(sides) == 2 else sides)
        raise error(
            f"{what}: {size} is {pixels:,} pixels, over the limit of {allowed:,} "
            f"({hint or f'set {PIXELS_ENV} to raise it'})"
        )


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``; for messages."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover - the loop returns


def memory_check_enabled() -> bool:
    return os.environ.get(MEMORY_CHECK_ENV, "1").strip() not in ("0", "false", "no", "off")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What a container's memory limit (cgroup v2 or v1) leaves, if one is set."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                return None
            limit = int(limit_text)
            used = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit >= 2**60:  # cgroup v1's "no limit"
            return None
        return max(0, limit - used)
    return None


def process_rss() -> int | None:
    """This process's resident memory now (Linux ``/proc``), or ``None`` where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def available_memory() -> int | None:
    """Bytes of host memory a new allocation can use (``None`` when the system does not say)."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if found:
        return min(found)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def existing_ancestor(path: str | Path) -> Path:
    """``path`` or the nearest folder above it that exists (where it would be created)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def unwritable_reason(path: str | Path) -> str | None:
    """Why nothing can be created at ``path`` (its nearest existing folder is on a read-only file
    system, or not writable by this process); ``None`` when it looks writable. A read-only file
    system reports no free space, so this is asked before :func:`free_disk`."""
    where = existing_ancestor(path)
    folder = where if where.is_dir() else where.parent
    try:
        if os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            return f"{folder} is on a read-only file system"
    except (OSError, AttributeError):
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable by this user"
    return None


def free_disk(path: str | Path) -> int | None:
    """Free bytes on the file system that holds (or would hold) ``path``; ``None`` if unknown."""
    try:
        return int(shutil.disk_usage(existing_ancestor(path)).free)
    except OSError:
        return None


def check_regular_file(path: str | Path, what: str = "data") -> None:
    """Refuse anything but a regular file (or a link to one): reading a named pipe, a device or a
    socket blocks or never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a folder" if stat.S_ISDIR(mode)
            else "not a regular file"
        )
        raise DataError(f"{what} {path} is {kind}, not a regular file; give files, folders or globs of files")

"""Names that become file names: item names, plugin labels, variant names.

Item names come from files (an image's stem, a checkpoint's metadata, a plugin's ``load``), so
they are untrusted data: a name such as ``../../x`` or ``/etc/x`` must never choose where a file
is written. :func:`safe_name` turns any name into one plain file name (no folder parts, no
control characters, not hidden, not a device name, of bounded length), :func:`unique_safe_names`
makes a list of them distinct (also where the file system ignores case), and :func:`inside`
checks that a path built from one stays in its folder. Ordinary names (``kodim01``,
``frame00003``, ``my photo``) are left exactly as they are.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from inrkit.errors import InrkitError

#: Longest file name stem produced, in UTF-8 bytes (file systems allow 255 for the whole name).
MAX_NAME_BYTES = 120
#: Replaces each run of characters that may not appear in a file name.
REPLACEMENT = "_"
_FORBIDDEN = set('/\\:*?"<>|')
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def safe_name(name: object, fallback: str = "item") -> str:
    """``name`` as one safe file name stem (``fallback`` when nothing usable is left)."""
    text = unicodedata.normalize("NFC", str(name))
    # Folder parts become one name: "../../x" -> "x", "/abs/dir/x" -> "abs_dir_x", "a\\b" -> "a_b".
    parts = [part for part in re.split(r"[/\\]+", text) if part.strip() not in ("", ".", "..")]
    text = REPLACEMENT.join(parts)
    out: list[str] = []
    for ch in text:
        bad = ch in _FORBIDDEN or unicodedata.category(ch)[0] == "C"  # controls, format, unassigned, surrogates
        if bad:
            if not out or out[-1] != REPLACEMENT:
                out.append(REPLACEMENT)
        else:
            out.append(ch)
    cleaned = "".join(out).strip().lstrip(".").rstrip(". ")  # no hidden files, no "." or ".."
    if cleaned.split(".")[0].upper() in _WINDOWS_DEVICES:
        cleaned = REPLACEMENT + cleaned
    encoded = cleaned.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        cleaned = encoded[:MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip(". ")
    return cleaned or fallback


def unique_safe_names(names: Iterable[object], fallback: str = "item") -> list[str]:
    """:func:`safe_name` of each name, made distinct (ignoring case): the second ``x`` becomes
    ``x-2``, then ``x-3``, ... skipping names that are taken."""
    safe = [safe_name(n, fallback) for n in names]
    taken = {s.casefold() for s in safe}
    seen: set[str] = set()
    out = []
    for name in safe:
        key = name.casefold()
        if key in seen:
            k = 2
            while f"{name}-{k}".casefold() in taken:
                k += 1
            name = f"{name}-{k}"
            key = name.casefold()
            taken.add(key)
        seen.add(key)
        out.append(name)
    return out


def inside(folder: str | Path, path: str | Path) -> Path:
    """``path``, after checking that it lies in ``folder``: its folder, links resolved, is
    ``folder`` or below it, and its name is a plain name. The last check before writing a file
    whose name came from data. (The file itself may be a link: inrkit writes by renaming a new
    file into place, which replaces a link instead of following it.)"""
    path = Path(path)
    root = Path(os.path.realpath(folder))
    parent = Path(os.path.realpath(path.parent))
    if path.name in ("", ".", "..") or (parent != root and root not in parent.parents):
        raise InrkitError(f"refusing to write {path}: it is outside {folder}")
    return path


def output_paths(folder: str | Path, names: Sequence[object], suffix: str) -> list[Path]:
    """One file per name in ``folder``: safe, distinct, and checked to lie inside it."""
    folder = Path(folder)
    return [inside(folder, folder / f"{name}{suffix}") for name in unique_safe_names(names)]


def printable(text: object) -> str:
    """``text`` with control characters escaped, for printing names from files to a terminal."""
    value = str(text)
    if all(unicodedata.category(ch)[0] != "C" for ch in value):
        return value
    return "".join(ch if unicodedata.category(ch)[0] != "C" else repr(ch)[1:-1] for ch in value)

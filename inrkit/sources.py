"""From what a user passes as ``--data`` to files and item names, for every file-based signal.

A source is a file, a folder (its files with one of the signal's suffixes, not subfolders) or a
glob (quoted, ``**`` recursive); each expands to a sorted list of files, or to one
:class:`~inrkit.errors.DataError` naming the source. Item names come from file stems and are made
unique, since run folders and reconstructions are named after them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection
from pathlib import Path

from inrkit.errors import DataError
from inrkit.interfaces import Item


def expand(source: str, suffixes: Collection[str], what: str = "files") -> list[str]:
    """The files a source names: itself, a folder's files ending in ``suffixes``, or a glob's matches."""
    if not source.strip():
        raise DataError("an empty path was given as data")
    if any(ch in source for ch in "*?["):
        matches = sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p))
        if not matches:
            raise DataError(f"no files match {source!r}")
        return matches
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"folder {source} holds no {what} (looked for {', '.join(sorted(suffixes))})")
        return files
    if not path.exists():
        raise DataError(f"no such file or folder: {source}")
    return [source]


def make_names_unique(items: list[Item]) -> None:
    """Rename repeated names in place: the second ``x`` becomes ``x-2``, then ``x-3``, ... (skipping taken names)."""
    taken = {item.name for item in items}
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            k = 2
            while f"{item.name}-{k}" in taken:
                k += 1
            item.name = f"{item.name}-{k}"
            taken.add(item.name)
        seen.add(item.name)

"""From what a user passes as ``--data`` to files and item names, for every file-based signal.

A source is a file, a folder (its files with one of the signal's suffixes, not subfolders) or a
glob (quoted, ``**`` recursive); each expands to a sorted list of regular files, or to one
:class:`~inrkit.errors.DataError` naming the source. Item names come from file stems and are made
unique, since run folders and reconstructions are named after them. :func:`expand_classes` also
reads a folder laid out as torchvision's ``ImageFolder`` (``root/<class>/<file>``), keeping each
file's class.

Only regular files are read: a named pipe, a device or a socket given as data would block or never
end, so it is refused. A recursive glob follows links to folders once: a link back to a folder
above it (a loop) is not entered again, and two paths to the same file count once.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Collection
from pathlib import Path

from inrkit.errors import DataError
from inrkit.interfaces import Item
from inrkit.limits import check_regular_file


def expand(source: str, suffixes: Collection[str], what: str = "files") -> list[str]:
    """The files a source names: itself, a folder's files ending in ``suffixes``, or a glob's matches."""
    if not source.strip():
        raise DataError("an empty path was given as data")
    if "\x00" in source:
        raise DataError(f"data path {source!r} contains a NUL character")
    if any(ch in source for ch in "*?["):
        matches = _unique_files(_glob(source))
        if not matches:
            raise DataError(f"no files match {source!r}")
        return matches
    path = Path(source)
    if path.is_dir():
        files = _unique_files(sorted(str(p) for p in path.iterdir() if p.suffix.lower() in suffixes))
        if not files:
            raise DataError(f"folder {source} holds no {what} (looked for {', '.join(sorted(suffixes))})")
        return files
    if not os.path.lexists(path):
        raise DataError(f"no such file or folder: {source}")
    check_regular_file(path, "data")
    return [source]


def expand_classes(source: str, suffixes: Collection[str], what: str = "files") -> list[tuple[str, str | None]]:
    """:func:`expand`, each file with its class: ``None``, except for a folder that holds no
    matching files itself but class subfolders that do (torchvision's ``ImageFolder`` layout,
    ``root/<class>/<file>``), whose files come sorted by class then by name, each with its
    folder's name as the class.

    A folder with matching files of its own is read as :func:`expand` reads it (its subfolders
    are not looked into). Hidden subfolders (``.name``) are skipped, so are subfolders without
    matching files and deeper folders; a link to a folder counts as that folder, once (a second
    path to a folder or a file already listed is skipped).
    """
    path = Path(source)
    plain = not source.strip() or "\x00" in source or any(ch in source for ch in "*?[")  # expand refuses or globs
    if plain or not path.is_dir() or _has_files(path, suffixes):
        return [(file, None) for file in expand(source, suffixes, what)]
    found: list[tuple[str, str | None]] = []
    seen_folders: set[str] = set()
    seen_files: set[str] = set()
    for name in _entries(source):
        folder = path / name
        if name.startswith(".") or not folder.is_dir():
            continue
        real = os.path.realpath(folder)
        if real in seen_folders:
            continue
        seen_folders.add(real)
        for file in _unique_files(sorted(str(p) for p in _files_in(folder) if p.suffix.lower() in suffixes)):
            key = os.path.realpath(file)
            if key not in seen_files:
                seen_files.add(key)
                found.append((file, name))
    if not found:
        raise DataError(
            f"folder {source} holds no {what}, neither directly nor in class subfolders "
            f"(looked for {', '.join(sorted(suffixes))})"
        )
    return found


def _files_in(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _has_files(folder: Path, suffixes: Collection[str]) -> bool:
    """Whether ``folder`` holds a regular file (or a link to one) ending in ``suffixes``."""
    return any(_unique_files([str(p)]) for p in _files_in(folder) if p.suffix.lower() in suffixes)


def _unique_files(paths: list[str]) -> list[str]:
    """The regular files among ``paths``, each real file once (the first path to it is kept)."""
    seen: set[str] = set()
    out = []
    for p in paths:
        try:
            if not stat.S_ISREG(os.stat(p).st_mode):
                continue
        except OSError:
            continue  # a dangling link, or a file removed meanwhile
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            out.append(p)
    return out


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, sorted, except that ``**`` enters each real folder
    once: Python's glob follows links to folders, and a link to a folder above loops until the
    path is too long, listing the same files many times over."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern, recursive=True))
    parts = pattern.replace(os.sep, "/").split("/")
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = "/".join(parts[:first]) or ("/" if pattern.startswith("/") else "")
    if root and not os.path.isdir(root):
        return []
    found: list[str] = []
    _match(root, parts[first:], found, set())
    return sorted(found)


def _entries(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder or "."))
    except OSError:
        return []


def _join(folder: str, name: str) -> str:
    return os.path.join(folder, name) if folder else name


def _match(folder: str, parts: list[str], found: list[str], visited: set[tuple[int, int, int]]) -> None:
    """Append the paths under ``folder`` matching the pattern ``parts`` (glob's rules: ``*`` and
    ``**`` skip names starting with a dot unless the pattern part starts with one)."""
    part, rest = parts[0], parts[1:]
    if part == "**":
        try:
            info = os.stat(folder or ".")
        except OSError:
            return
        key = (len(parts), info.st_dev, info.st_ino)  # per ** of the pattern
        if key in visited:
            return  # this folder was entered already: a link loop or a second link to it
        visited.add(key)
        if rest:
            _match(folder, rest, found, visited)  # ** matches no folder at all
        else:
            found.extend(_join(folder, n) for n in _entries(folder) if not n.startswith("."))
        for name in _entries(folder):
            path = _join(folder, name)
            if not name.startswith(".") and os.path.isdir(path):
                if not rest:
                    # "dir/**": every file and folder below, at any depth
                    _match(path, ["**"], found, visited)
                else:
                    _match(path, parts, found, visited)
        return
    if glob.has_magic(part):
        names = [n for n in _entries(folder) if fnmatch.fnmatchcase(n, part) and (part.startswith(".") or not n.startswith("."))]
    else:
        names = [part] if os.path.lexists(_join(folder, part)) or not rest else []
    for name in names:
        path = _join(folder, name)
        if not rest:
            if os.path.lexists(path):
                found.append(path)
        elif os.path.isdir(path):
            _match(path, rest, found, visited)


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

"""User-facing errors.

Everything a user can get wrong (a path, a plugin name, an option, a diverging run) raises an
``InrkitError`` subclass whose message names the cause. The CLI prints that message and exits
non-zero without a traceback; anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class InrkitError(Exception):
    """Base class of every error that is the user's to fix."""

    exit_code = 1


class ConfigError(InrkitError):
    """A configuration value, option key or option value is invalid."""

    exit_code = 2


class PluginError(InrkitError):
    """A plugin name is unknown, duplicated, or a plugin class is malformed."""

    exit_code = 2


class DataError(InrkitError):
    """Input data is missing, unreadable or inconsistent."""


class TrainingError(InrkitError):
    """Training failed, e.g. the loss became NaN or infinite."""


class CheckpointError(InrkitError):
    """A run folder or checkpoint is missing, truncated or not written by inrkit."""


class StorageError(InrkitError):
    """A file or folder could not be written: a full disk, a read-only folder, missing permissions."""


class TrainingInterrupted(InrkitError):
    """Training was interrupted (Ctrl-C, SIGTERM); a resumable snapshot was saved where possible.

    The exit code is 128 plus the signal's number, as a shell reports a process a signal ended:
    130 for Ctrl-C (SIGINT), 143 for SIGTERM.
    """

    exit_code = 130

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM) delivered as an exception, so that it unwinds exactly as
    Ctrl-C does: the trainer saves a snapshot, files being written are removed, and the command
    exits with ``128 + signum``. The command line installs the handler that raises it."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_number(exc: BaseException) -> int:
    """The signal a :class:`KeyboardInterrupt` stands for: its ``signum``, or SIGINT (2)."""
    return int(getattr(exc, "signum", 2))


def one_line(text: str) -> str:
    """``text`` on one line: line breaks (of a parser's or a library's message) become ``; ``."""
    parts = [part.strip() for part in str(text).splitlines()]
    return "; ".join(part for part in parts if part)


def format_validation_error(exc: Any, prefix: str = "") -> str:
    """A pydantic ``ValidationError`` as one line per problem, ``path: message (got value)``,
    without pydantic's URLs (``prefix`` names the section, e.g. ``activation.``)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key")
            continue
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {_short_repr(got)})"
        message = err["msg"].removeprefix("Value error, ")  # a validator's own words, as written
        lines.append(f"{where}: {one_line(message)}{shown}")
    return "; ".join(lines)


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: values may come from untrusted files."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

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


class TrainingInterrupted(InrkitError):
    """Training was interrupted (Ctrl-C); a resumable snapshot was saved where possible."""

    exit_code = 130


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
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        lines.append(f"{where}: {err['msg']}{shown}")
    return "; ".join(lines)

"""inrkit: implicit neural representations for many signals at once, built from plugins."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inrkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from typing import TYPE_CHECKING  # noqa: E402

from inrkit.plugins.hookspecs import hookimpl  # noqa: E402  (plugins import this first)

if TYPE_CHECKING:
    from inrkit.api import FitResult, Run, as_config, decode, encode, fit, load, parameter_counts

__all__ = ["FitResult", "Run", "__version__", "as_config", "decode", "encode", "fit", "hookimpl", "load", "parameter_counts"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """Import the API (and torch) only when used, so ``import inrkit`` in a plugin stays light."""
    if name in ("fit", "encode", "load", "decode", "parameter_counts", "Run", "FitResult", "as_config"):
        from inrkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'inrkit' has no attribute {name!r}")

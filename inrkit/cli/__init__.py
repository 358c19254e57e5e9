"""The ``inrkit`` command line (``inrkit.cli:main``)."""

from inrkit.cli.app import main

__all__ = ["main"]

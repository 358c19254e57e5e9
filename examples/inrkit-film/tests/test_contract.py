"""The plugin's own tests: inrkit's contract kit, run against the installed plugin."""

from __future__ import annotations

from typing import Any, ClassVar

from inrkit.testing import SharingStrategyContract


class TestFilm(SharingStrategyContract):
    sharing = "film"


class TestFilmShiftOnly(SharingStrategyContract):
    sharing = "film"
    options: ClassVar[dict[str, Any]] = {"shift_only": True}

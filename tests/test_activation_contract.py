"""The plugin contract kit, run over every registered activation (as a plugin author would)."""

from __future__ import annotations

import pytest

from inrkit.plugins import get_registry
from inrkit.testing import ActivationContract


class TestEveryActivation(ActivationContract):
    @pytest.fixture(params=get_registry().names("activation"))
    def activation_name(self, request: pytest.FixtureRequest) -> str:
        return request.param

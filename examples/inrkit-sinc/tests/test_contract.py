"""The plugin's own tests: inrkit's contract kit, run against the installed plugin."""

from inrkit.testing import ActivationContract


class TestSinc(ActivationContract):
    activation = "sinc"

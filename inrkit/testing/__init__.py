"""Contract kits: the checks every plugin of a kind must pass, as pytest classes to subclass.

A plugin author installs the plugin (``pip install -e .``) and adds to its tests::

    from inrkit.testing import ActivationContract, SharingStrategyContract, SignalContract

    class TestSinc(ActivationContract):
        activation = "sinc"

    class TestFilm(SharingStrategyContract):
        sharing = "film"

inrkit's own suite runs the same classes over every built-in plugin. Importing this module needs
pytest (a test dependency), so nothing else in inrkit imports it.
"""

from inrkit.testing._common import smooth_test_image, write_test_images
from inrkit.testing.activation import CORE_STRATEGIES, ActivationContract
from inrkit.testing.sharing import SharingStrategyContract
from inrkit.testing.signal import SignalContract

__all__ = [
    "CORE_STRATEGIES",
    "ActivationContract",
    "SharingStrategyContract",
    "SignalContract",
    "smooth_test_image",
    "write_test_images",
]

"""pluggy hook specifications: the whole contract between inrkit and its plugins.

A plugin is a module (or object) with functions marked ``@inrkit.hookimpl`` whose names match
the specs below; it is found through the ``inrkit`` entry-point group. Each register hook returns
a list of classes, each with a unique ``name``.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "inrkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def inrkit_register_activations() -> list[type]:
    """Return :class:`inrkit.interfaces.Activation` subclasses this plugin provides."""


@hookspec
def inrkit_register_sharing_strategies() -> list[type]:
    """Return :class:`inrkit.interfaces.SharingStrategy` subclasses this plugin provides."""


@hookspec
def inrkit_register_signals() -> list[type]:
    """Return :class:`inrkit.interfaces.Signal` subclasses this plugin provides."""


@hookspec
def inrkit_register_callbacks() -> list[type]:
    """Return :class:`inrkit.interfaces.Callback` subclasses this plugin provides."""


#: Which hook registers which plugin kind.
REGISTER_HOOKS: dict[str, str] = {
    "activation": "inrkit_register_activations",
    "sharing": "inrkit_register_sharing_strategies",
    "signal": "inrkit_register_signals",
    "callback": "inrkit_register_callbacks",
}

"""Plugin machinery: hook markers, specs and the registry."""

from inrkit.plugins.hookspecs import PROJECT_NAME, hookimpl, hookspec
from inrkit.plugins.manager import (
    PluginFailure,
    PluginRegistry,
    RegisteredClass,
    get_registry,
    reset_registry,
)

__all__ = [
    "PROJECT_NAME",
    "PluginFailure",
    "PluginRegistry",
    "RegisteredClass",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset_registry",
]

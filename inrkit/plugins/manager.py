"""Plugin discovery and the class registry.

Discovery is lazy (first use of the registry, never at import of ``inrkit.cli``), loads each
entry point on its own so one broken plugin is reported and skipped instead of breaking every
command (an exception, and also ``sys.exit()`` or any other ``BaseException`` but Ctrl-C), and
rejects duplicate names naming both sources. Environment switches:

- ``INRKIT_DISABLE_PLUGINS=a,b`` skips the named entry points;
- ``INRKIT_LOAD_PLUGINS=a,b`` loads only the named entry points (empty string: none);
- ``INRKIT_STRICT_PLUGINS=1`` re-raises a plugin's import error instead of skipping it;
- ``INRKIT_TRACE_PLUGINS=1`` prints every hook call, with its plugin and result, to stderr.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, cast, overload

import pluggy
import pydantic

from inrkit._version import __version__
from inrkit.errors import ConfigError, PluginError, format_validation_error, one_line
from inrkit.interfaces import PLUGIN_BASES, Activation, Callback, Plugin, PluginOptions, SharingStrategy, Signal
from inrkit.plugins import hookspecs

P = TypeVar("P", bound=Plugin)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME


@dataclasses.dataclass(frozen=True)
class PluginFailure:
    """An entry point that could not be loaded or registered."""

    plugin: str
    distribution: str
    version: str
    error: str

    def describe(self) -> str:
        return f"plugin {self.plugin!r} ({self.distribution} {self.version}) failed to load: {self.error}"


@dataclasses.dataclass(frozen=True)
class RegisteredClass:
    """One plugin class and where it came from."""

    kind: str
    name: str
    cls: type[Plugin]
    plugin: str
    distribution: str
    version: str

    @property
    def source(self) -> str:
        return f"plugin {self.plugin!r} from {self.distribution} {self.version}"


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "?"
    return dist.metadata["Name"] or "unknown", dist.version or "?"


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line; a ``SystemExit`` says that the plugin tried to exit."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {one_line(str(exc))}"


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


class PluginRegistry:
    """A pluggy ``PluginManager`` plus the classes its plugins registered, by kind and name.

    ``entry_points`` defaults to the installed ``inrkit`` group; tests pass their own list
    (fake or broken entry points) to get a fresh, isolated registry.
    """

    def __init__(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> None:
        self._entry_points = None if entry_points is None else list(entry_points)
        self._lock = threading.Lock()
        self._loaded = False
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._tracing = os.environ.get("INRKIT_TRACE_PLUGINS", "") not in ("", "0")
        self.failures: list[PluginFailure] = []
        self._sources: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self._classes: dict[str, dict[str, RegisteredClass]] = {kind: {} for kind in PLUGIN_BASES}
        self._conflicts: dict[str, dict[str, str]] = {kind: {} for kind in PLUGIN_BASES}

    # -- discovery --------------------------------------------------------------------------
    def register(self, plugin: Any, name: str, distribution: str = "local", version: str = "?") -> None:
        """Register a plugin object directly (tests, notebooks) and re-collect classes."""
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except Exception:
            self.pm.unregister(name=name)
            raise
        self._sources[name] = (distribution, version)
        if self._loaded:
            self._collect()

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._sources.pop(name, None)
        if self._loaded:
            self._collect()

    def _trace(self, message: str) -> None:
        if self._tracing:
            sys.stderr.write(f"[inrkit plugins] {message}\n")

    def load(self) -> PluginRegistry:
        """Discover plugins once; later calls are free."""
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self
            self._load_entry_points()
            self.pm.check_pending()
            self._collect()
            self._loaded = True
        return self

    def _selected_entry_points(self) -> list[importlib.metadata.EntryPoint]:
        if self._entry_points is not None:
            eps = self._entry_points
        else:
            eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        # One distribution may be visible twice (e.g. an editable install plus a path entry).
        unique: dict[tuple[str, str], importlib.metadata.EntryPoint] = {}
        for ep in eps:
            unique.setdefault((ep.name, ep.value), ep)
        eps = list(unique.values())
        only = _env_list("INRKIT_LOAD_PLUGINS")
        if only is not None:
            eps = [ep for ep in eps if ep.name in only]
        disabled = set(_env_list("INRKIT_DISABLE_PLUGINS") or [])
        return [ep for ep in eps if ep.name not in disabled]

    def _load_entry_points(self) -> None:
        strict = os.environ.get("INRKIT_STRICT_PLUGINS", "") not in ("", "0")
        for ep in self._selected_entry_points():
            distribution, version = _dist_of(ep)
            try:
                if self.pm.get_plugin(ep.name) is not None:
                    other = self._sources.get(ep.name, ("unknown", "?"))
                    raise PluginError(
                        f"entry point name {ep.name!r} is used by both {other[0]} {other[1]} "
                        f"and {distribution} {version}"
                    )
                self._trace(f"loading entry point {ep.name} = {ep.value} ({distribution} {version})")
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
                try:
                    self.pm.check_pending()  # a misspelled hook name fails loudly, naming it
                except Exception:
                    self.pm.unregister(name=ep.name)
                    raise
                self._sources[ep.name] = (distribution, version)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a plugin's sys.exit() must not end inrkit
                if strict:
                    if isinstance(exc, Exception):
                        raise
                    raise PluginError(f"plugin {ep.name!r} ({distribution} {version}) raised {_describe(exc)} while loading") from None
                failure = PluginFailure(ep.name, distribution, version, _describe(exc))
                self.failures.append(failure)
                warnings.warn(
                    f"{failure.describe()} (inrkit {__version__}); it is skipped",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def _collect(self) -> None:
        """Ask every plugin for its classes, validating and de-duplicating them.

        A plugin whose hook raises or returns something that is not a proper plugin class is
        reported and skipped. A name registered twice is rejected: it stays unusable, with an
        error naming both sources, rather than one silently shadowing the other.
        """
        classes: dict[str, dict[str, RegisteredClass]] = {kind: {} for kind in PLUGIN_BASES}
        conflicts: dict[str, dict[str, str]] = {kind: {} for kind in PLUGIN_BASES}
        failures = [f for f in self.failures if not f.error.startswith("registration: ")]
        for kind, hook_name in hookspecs.REGISTER_HOOKS.items():
            base = PLUGIN_BASES[kind]
            hook = getattr(self.pm.hook, hook_name)
            for impl in reversed(hook.get_hookimpls()):  # registration order
                plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                distribution, version = self._sources.get(plugin_name, ("local", "?"))
                try:
                    returned = impl.function() or []
                    self._trace(f"{hook_name}() of {plugin_name} -> {[getattr(c, 'name', c) for c in returned]}")
                    entries = [
                        self._validated(kind, base, cls, plugin_name, distribution, version, hook_name)
                        for cls in returned
                    ]
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # SystemExit from a hook too
                    if os.environ.get("INRKIT_STRICT_PLUGINS", "") not in ("", "0"):
                        if isinstance(exc, Exception):
                            raise
                        raise PluginError(f"plugin {plugin_name!r} raised {_describe(exc)} in {hook_name}()") from None
                    failure = PluginFailure(plugin_name, distribution, version, f"registration: {_describe(exc)}")
                    failures.append(failure)
                    warnings.warn(f"{failure.describe()}; it is skipped", RuntimeWarning, stacklevel=3)
                    continue
                for entry in entries:
                    first = classes[kind].get(entry.name)
                    if first is None and entry.name not in conflicts[kind]:
                        classes[kind][entry.name] = entry
                        continue
                    earlier = first.source if first is not None else "an earlier plugin"
                    message = conflicts[kind].get(entry.name) or (
                        f"duplicate {kind} name {entry.name!r}: registered by {earlier} and by {entry.source}"
                    )
                    if entry.name not in conflicts[kind]:
                        message += "; uninstall or disable one of them (INRKIT_DISABLE_PLUGINS)"
                    else:
                        message += f" (and by {entry.source})"
                    conflicts[kind][entry.name] = message
                    classes[kind].pop(entry.name, None)
                    warnings.warn(message, RuntimeWarning, stacklevel=3)
        self._classes = classes
        self._conflicts = conflicts
        self.failures = failures

    @staticmethod
    def _validated(
        kind: str, base: type, cls: Any, plugin: str, distribution: str, version: str, hook_name: str
    ) -> RegisteredClass:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{hook_name} returned {cls!r}, which is not a subclass of {base.__name__}")
        cls = cast(type[Plugin], cls)
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{kind} class {cls.__qualname__} has no 'name'")
        abstract = getattr(cls, "__abstractmethods__", None)
        if abstract:
            missing = ", ".join(sorted(abstract))
            raise PluginError(f"{kind} class {cls.__qualname__} ({name!r}) does not implement {missing}")
        return RegisteredClass(kind, name, cls, plugin, distribution, version)

    # -- lookup -----------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        self.load()
        return sorted(self._classes[kind])

    def plugins(self) -> list[dict[str, Any]]:
        """Every registered plugin object: entry-point name, distribution, version, hooks it implements."""
        self.load()
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            distribution, version = self._sources.get(name, ("local", "?"))
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            provides = sorted(f"{e.kind}:{e.name}" for kind in self._classes.values() for e in kind.values() if e.plugin == name)
            out.append({"plugin": name, "distribution": distribution, "version": version, "hooks": hooks, "provides": provides})
        return out

    def conflicts(self) -> list[str]:
        """Messages for names registered more than once (each such name is unusable)."""
        self.load()
        return [msg for kind in self._conflicts.values() for msg in kind.values()]

    def entries(self, kind: str | None = None) -> list[RegisteredClass]:
        self.load()
        kinds = [kind] if kind else list(PLUGIN_BASES)
        return [self._classes[k][n] for k in kinds for n in sorted(self._classes[k])]

    def entry(self, kind: str, name: str) -> RegisteredClass:
        self.load()
        if kind not in self._classes:
            raise PluginError(f"unknown plugin kind {kind!r}; valid kinds: {', '.join(PLUGIN_BASES)}")
        if name in self._conflicts[kind]:
            raise PluginError(self._conflicts[kind][name])
        try:
            return self._classes[kind][name]
        except KeyError:
            valid = ", ".join(sorted(self._classes[kind])) or "(none installed)"
            hint = ""
            if self.failures:
                hint = "; plugins that failed to load: " + ", ".join(f.plugin for f in self.failures)
            raise PluginError(
                f"unknown {kind} {name!r}; valid {kind} names: {valid}{hint}. "
                f"A plugin providing it may need to be installed (see 'inrkit plugins')."
            ) from None

    def get(self, kind: str, name: str) -> type[Plugin]:
        return self.entry(kind, name).cls

    @overload
    def create(self, kind: Literal["activation"], name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Activation: ...
    @overload
    def create(self, kind: Literal["sharing"], name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> SharingStrategy: ...
    @overload
    def create(self, kind: Literal["signal"], name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Signal: ...
    @overload
    def create(self, kind: Literal["callback"], name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Callback: ...
    @overload
    def create(self, kind: str, name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Plugin: ...

    def create(self, kind: str, name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Plugin:
        """An instance of the plugin ``name`` of ``kind`` with validated ``options``.

        ``options`` is a plain dict (``{"omega": 20}``) or the plugin's own ``Options``; an
        unknown name is a :class:`PluginError` listing the valid ones, a bad option a
        :class:`ConfigError` naming it and the valid keys.
        """
        return self.get(kind, name)(self.validate_options(kind, name, options))

    def validate_options(
        self, kind: str, name: str, options: Mapping[str, Any] | PluginOptions | None = None
    ) -> PluginOptions:
        """The plugin's ``Options`` for ``options``, without creating the plugin."""
        cls = self.get(kind, name)
        if isinstance(options, cls.Options):
            return options
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(
                f"{kind} {name!r}: options must be a dict or {cls.__name__}.Options, not {type(options).__qualname__}"
            )
        try:
            return cls.Options(**(options or {}))
        except pydantic.ValidationError as exc:
            valid = ", ".join(cls.Options.model_fields) or "(none)"
            message = format_validation_error(exc, prefix=f"{kind}.")
            raise ConfigError(f"{kind} {name!r}: {message} (valid options: {valid})") from None


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process-wide registry over installed entry points, loaded on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginRegistry()
    return _default.load()


def reset_registry() -> None:
    """Forget the process-wide registry (tests; after installing a plugin at run time)."""
    global _default
    with _default_lock:
        _default = None

"""Finding plugins through entry points and looking them up by name.

The registry wraps pluggy so that the rest of twcore never touches it: it loads each entry point
of the group ``twcore`` on its own, records what failed and why, and answers ``get(kind, name)``
with clear errors for unknown and duplicated names.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import os
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from twcore.contract import hookspecs
from twcore.contract.errors import (
    BrokenPluginError,
    ConfigError,
    DuplicatePluginError,
    UnknownPluginError,
    did_you_mean,
    format_choices,
)
from twcore.orchestration.plugin_modules import (
    import_module_named,
    named_modules,
    registering_module,
)

if TYPE_CHECKING:
    from twcore.contract.grids import ReproductionGrid

ENTRY_POINT_GROUP = "twcore"
DISABLE_AUTOLOAD_ENV = "TWCORE_DISABLE_PLUGIN_AUTOLOAD"
ONLY_PLUGINS_ENV = "TWCORE_PLUGINS"
EXCLUDE_PLUGINS_ENV = "TWCORE_EXCLUDE_PLUGINS"

NAME_PATTERN = re.compile(hookspecs.NAME_RULE)
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
IMPORT_PATH_PATTERN = re.compile(f"^{_DOTTED}:{_DOTTED}$")
"""A class registered by import path: ``package.module:Class`` (imported on first use)."""


@dataclass(frozen=True)
class PluginKind:
    """One kind of plugin: the hook that registers it and the class it must subclass (named
    by import path, so that listing plugins imports none of the contract's torch modules)."""

    name: str
    hook: str
    base_path: str

    @property
    def base(self) -> type:
        """The class every plugin of this kind subclasses."""
        return _import_path(self.base_path)


KINDS: dict[str, PluginKind] = {
    "method": PluginKind("method", "twcore_register_methods", "twcore.contract.method:Method"),
    "task": PluginKind("task", "twcore_register_tasks", "twcore.contract.task:Task"),
    "model": PluginKind("model", "twcore_register_models", "twcore.contract.model:Model"),
}


KNOWN_HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith(f"{hookspecs.PROJECT}_") and callable(value)
)
"""Every hook of :mod:`twcore.contract.hookspecs`, read from it (for did-you-mean messages)."""


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin module came from: an installed distribution's entry point, or (no
    distribution) a module of this process (`travels`: one the processes twcore starts import
    too, see :mod:`twcore.orchestration.plugin_modules`)."""

    name: str
    distribution: str | None = None
    version: str | None = None
    travels: bool = False

    def describe(self) -> str:
        """``'name' (dist version)`` for messages."""
        origin = f"{self.distribution} {self.version}" if self.distribution else "not installed"
        return f"'{self.name}' ({origin})"


@dataclass
class PluginStatus:
    """The outcome of loading one plugin module."""

    source: PluginSource
    status: str  # "loaded" or "failed"
    error: str | None = None
    registrations: list[Registration] = field(default_factory=list)


@dataclass(frozen=True)
class Registration:
    """A named method, task or model class and the plugin that registered it (`default`: the
    plugin offers itself as the one to use when a run names none of its kind).

    `target` is the class, or its import path ``package.module:Class``: then the class is
    imported, and checked, the first time :attr:`cls` is read (:meth:`PluginRegistry.get` does
    that), so listing plugins costs no imports of theirs.
    """

    kind: str
    name: str
    target: type | str
    source: PluginSource
    default: bool = False

    @property
    def class_path(self) -> str:
        """Where the class is, as ``module:Class`` (without importing it)."""
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"

    @property
    def cls(self) -> type:
        """The plugin class, imported (and checked) on first use when registered by import path.

        Raises:
            BrokenPluginError: the import path does not import, or names no valid plugin class.
        """
        if not isinstance(self.target, str):
            return self.target
        resolved = self.__dict__.get("_resolved")
        if resolved is None:
            resolved = self._resolve()
            object.__setattr__(self, "_resolved", resolved)  # a cache, not a field
        return resolved

    def _resolve(self) -> type:
        assert isinstance(self.target, str)
        where = f"{self.kind} '{self.name}' of plugin {self.source.describe()}"
        try:
            cls = _import_path(self.target)
        except (Exception, SystemExit) as exc:  # sys.exit() in a plugin fails that plugin
            raise BrokenPluginError(
                f"{where}: its class {self.target!r} does not import: {_describe(exc)}"
            ) from exc
        try:
            _validate_registration(KINDS[self.kind], self.name, cls)
        except PluginLoadError as exc:
            raise BrokenPluginError(f"{where}: {exc}") from None
        return cls

    @property
    def config_class(self) -> type:
        """The dataclass of the plugin's options."""
        return self.cls.Config


class PluginLoadError(Exception):
    """A plugin module could not be used; the message says why."""


class PluginRegistry:
    """Every plugin available in this process, by kind and name.

    Args:
        autoload: load the ``twcore`` entry points (default: unless
            ``TWCORE_DISABLE_PLUGIN_AUTOLOAD`` is set).
        entry_points: the entry points to consider instead of the installed ones (tests).
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    ) -> None:
        self._manager = pluggy.PluginManager(hookspecs.PROJECT)
        self._manager.add_hookspecs(hookspecs)
        self._statuses: list[PluginStatus] = []
        self._by_name: dict[str, dict[str, list[Registration]]] = {kind: {} for kind in KINDS}
        self.autoload = _autoload_enabled() if autoload is None else autoload
        if self.autoload:
            self.load_entry_points(entry_points)

    # -- loading ---------------------------------------------------------------------------

    def load_entry_points(
        self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
    ) -> None:
        """Load the given (default: installed) ``twcore`` entry points, each on its own."""
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        only = _names_in(ONLY_PLUGINS_ENV)
        excluded = _names_in(EXCLUDE_PLUGINS_ENV) or set()
        for entry_point in sorted(entry_points, key=lambda ep: ep.name):
            source = _source_of(entry_point)
            names = {source.name, source.distribution}
            if (only is not None and not names & only) or names & excluded:
                continue
            try:
                plugin = entry_point.load()
            except (Exception, SystemExit) as exc:  # sys.exit() in a plugin fails that plugin
                self._statuses.append(
                    PluginStatus(source, "failed", f"import failed: {_describe(exc)}")
                )
                continue
            self.add_plugin(plugin, source)

    def add_plugin(self, plugin: object, source: PluginSource | str) -> PluginStatus:
        """Register a plugin object (a module or any object with hook implementations).

        Tests use this to add a plugin for their own duration without installing it.
        """
        if isinstance(source, str):
            source = PluginSource(source)
        status = PluginStatus(source, "loaded")
        try:
            self._register_hooks(plugin, source)
            status.registrations = self._collect_registrations(plugin, source)
        except PluginLoadError as exc:
            status.status, status.error = "failed", str(exc)
            if self._manager.is_registered(plugin):
                self._manager.unregister(plugin)
        else:
            for registration in status.registrations:
                self._by_name[registration.kind].setdefault(registration.name, []).append(
                    registration
                )
        self._statuses.append(status)
        return status

    def register(
        self, kind: str, name: str, cls: type, *, default: bool = False, module: str | None = None
    ) -> Registration:
        """Register one plugin class from code running in this process (``twcore.register``).

        Registering a name again from this process replaces the earlier class (a notebook cell
        run twice); a name an installed plugin has is refused.

        Args:
            kind: ``method``, ``task`` or ``model``.
            name: the plugin's name (lowercase letters, digits and ``-_.``).
            cls: the plugin class (a subclass of the kind's base class).
            default: offer it as its kind's default (as ``register(..., default=True)``).
            module: the module registering it (default: the caller's).

        Raises:
            ConfigError: an unknown kind, a bad name or class, or a name already installed.
        """
        if kind not in KINDS:
            raise ConfigError(
                f"unknown plugin kind {kind!r}{did_you_mean(kind, list(KINDS))}; kinds: "
                f"{', '.join(KINDS)}"
            )
        try:
            _validate_registration(KINDS[kind], name, cls)
        except PluginLoadError as exc:
            raise ConfigError(str(exc)) from None
        installed = [r for r in self._by_name[kind].get(name, []) if r.source.distribution]
        if installed:
            raise ConfigError(
                f"{kind} '{name}' is already registered by {installed[0].source.describe()}; "
                "give yours another name"
            )
        origin = module or "__main__"
        travels = registering_module() is not None or origin in named_modules()
        source = PluginSource(registering_module() or origin, travels=travels)
        registration = Registration(kind, name, cls, source, default=bool(default))
        self._by_name[kind][name] = [registration]
        self._statuses.append(PluginStatus(source, "loaded", registrations=[registration]))
        return registration

    def mark_travelling(self, module: str) -> None:
        """Mark what `module` (or its submodules) registered in this process as known to the
        processes twcore starts (it has been named as a plugin module)."""
        for by_name in self._by_name.values():
            for name, registrations in by_name.items():
                by_name[name] = [
                    dataclasses.replace(r, source=dataclasses.replace(r.source, travels=True))
                    if r.source.distribution is None
                    and (r.source.name == module or r.source.name.startswith(module + "."))
                    else r
                    for r in registrations
                ]

    def add_module_hooks(self, module: object) -> None:
        """Register a named plugin module's hook implementations, if it has any and they are
        not registered yet (:mod:`twcore.orchestration.plugin_modules`)."""
        marker = f"{hookspecs.PROJECT}_impl"
        has_hooks = any(hasattr(value, marker) for value in vars(module).values())
        if has_hooks and not self._manager.is_registered(module):
            source = PluginSource(getattr(module, "__name__", repr(module)), travels=True)
            status = self.add_plugin(module, source)
            if status.status == "failed":
                raise ConfigError(f"plugin module {source.name!r}: {status.error}")

    def _register_hooks(self, plugin: object, source: PluginSource) -> None:
        try:
            self._manager.register(plugin, name=f"{source.distribution}:{source.name}")
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(
                f"invalid hook implementation: {' '.join(str(exc).split())}"
            ) from exc
        except ValueError as exc:
            raise PluginLoadError(f"could not register: {exc}") from exc
        known = KNOWN_HOOKS
        for caller in self._manager.get_hookcallers(plugin) or []:
            if not caller.has_spec():
                raise PluginLoadError(
                    f"implements unknown hook '{caller.name}'"
                    f"{did_you_mean(caller.name, known)}; known hooks: {', '.join(known)}"
                )

    def _collect_registrations(self, plugin: object, source: PluginSource) -> list[Registration]:
        registrations: list[Registration] = []
        for kind in KINDS.values():
            caller = getattr(self._manager.hook, kind.hook)
            for implementation in caller.get_hookimpls():
                if implementation.plugin is not plugin:
                    continue
                register = _registrar(kind, source, registrations)
                try:
                    implementation.function(**{arg: register for arg in implementation.argnames})
                except PluginLoadError:
                    raise
                except (Exception, SystemExit) as exc:  # sys.exit() in a hook fails the plugin
                    raise PluginLoadError(f"{kind.hook} raised {_describe(exc)}") from exc
        return registrations

    # -- reproduction grids ----------------------------------------------------------------

    def reproduction_grids(self) -> list[ReproductionGrid]:
        """Every plugin's ``twcore_reproduction_grids``; a plugin that raises is skipped with
        a warning naming it (the others still count)."""
        from twcore.orchestration.console import warn

        grids: list[ReproductionGrid] = []
        for implementation in self._manager.hook.twcore_reproduction_grids.get_hookimpls():
            found: list[ReproductionGrid] = []
            try:
                implementation.function(register=found.append)
            except (Exception, SystemExit) as exc:  # sys.exit() in a hook fails the plugin
                name = implementation.plugin_name.removeprefix("None:")
                warn(f"plugin {name}: its reproduction grids raised {_describe(exc)}; skipped")
                continue
            grids.extend(found)
        return grids

    # -- lookup ----------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> Registration:
        """The plugin of `kind` called `name`, its class imported.

        Raises:
            UnknownPluginError: no plugin has that name (the message lists the installed ones).
            DuplicatePluginError: two distributions register that name (the message names both).
            BrokenPluginError: its class, registered by import path, does not import or is not a
                plugin class (the message names the plugin and the import error).
        """
        candidates = self._by_name[kind].get(name)
        if not candidates:
            names = self.names(kind)
            hint = "" if self.autoload else f" (plugin autoloading is off: {DISABLE_AUTOLOAD_ENV})"
            raise UnknownPluginError(
                f"unknown {kind} '{name}'{did_you_mean(name, names)}; installed {kind}s: "
                f"{format_choices(names)}{hint}"
            )
        if len(candidates) > 1:
            raise DuplicatePluginError(self.ambiguity(kind, name))
        candidates[0].cls  # noqa: B018 - imports and checks a class registered by import path
        return candidates[0]

    def ambiguity(self, kind: str, name: str) -> str:
        """Why `name` is ambiguous, with a hint that resolves it: skip the other entry points
        registering it (an entry point is one plugin module, so its distribution's other
        plugins keep loading)."""
        candidates = self._by_name[kind][name]
        origins = " and ".join(c.source.describe() for c in candidates)
        entry_points = list(dict.fromkeys(c.source.name for c in candidates))
        if len(entry_points) == 1:
            hint = f"fix plugin '{entry_points[0]}', which registers it more than once"
        else:
            hint = f"uninstall one, or skip the others with {EXCLUDE_PLUGINS_ENV}=" + ",".join(
                entry_points[1:]
            )
        return f"{kind} '{name}' is registered by more than one plugin: {origins}; {hint}"

    def default_name(self, kind: str) -> str:
        """The plugin of `kind` a run uses when it names none: the one registered with
        ``default=True`` (one registered in this process with ``twcore.register(...,
        default=True)`` wins over installed ones), or the only one installed.

        Raises:
            ConfigError: none or several qualify (the message lists them: name one).
        """
        names = self.names(kind)
        offered = sorted({r.name for r in self.registrations(kind) if r.default})
        yours = sorted(
            {r.name for r in self.registrations(kind) if r.default and not r.source.distribution}
        )
        if len(yours) == 1:  # a default registered by your own code wins over installed ones
            return yours[0]
        if len(offered) == 1:
            return offered[0]
        if not offered and len(names) == 1:
            return names[0]
        why = (
            f"{' and '.join(repr(n) for n in offered)} each offer to be the default"
            if offered
            else "no installed plugin offers to be the default"
        )
        raise ConfigError(
            f"no {kind} given and {why}: give {kind}=NAME; installed {kind}s: "
            f"{format_choices(names)}"
        )

    def names(self, kind: str) -> list[str]:
        """Sorted names of the plugins of `kind`."""
        return sorted(self._by_name[kind])

    def registrations(self, kind: str | None = None) -> Iterator[Registration]:
        """Every registration (of one kind, or all), duplicates included, sorted by name."""
        kinds = [kind] if kind else list(KINDS)
        for each in kinds:
            for name in sorted(self._by_name[each]):
                yield from self._by_name[each][name]

    def is_ambiguous(self, kind: str, name: str) -> bool:
        """Whether more than one plugin registers `name` as a `kind`."""
        return len(self._by_name[kind].get(name, ())) > 1

    @property
    def statuses(self) -> list[PluginStatus]:
        """The outcome of loading each plugin module, in load order."""
        return list(self._statuses)

    @property
    def failures(self) -> list[PluginStatus]:
        """The plugins that failed to load."""
        return [s for s in self._statuses if s.status == "failed"]


def _registrar(
    kind: PluginKind, source: PluginSource, registrations: list[Registration]
) -> Callable[[str, type | str], None]:
    def register(name: str, cls: type | str, *, default: bool = False) -> None:
        if isinstance(cls, str):
            _validate_import_path(kind, name, cls)
        else:
            _validate_registration(kind, name, cls)
        registrations.append(Registration(kind.name, name, cls, source, default=bool(default)))

    return register


def _validate_name(kind: PluginKind, name: Any) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PluginLoadError(
            f"registered {kind.name} name {name!r}: names are lowercase letters and digits with "
            "one '-', '_' or '.' between them, starting and ending with a letter or a digit"
        )


def _validate_import_path(kind: PluginKind, name: Any, path: str) -> None:
    """The name, the path's form, and that its module exists (found without running it: only
    its parent packages are imported, which a light plugin keeps cheap)."""
    _validate_name(kind, name)
    if not IMPORT_PATH_PATTERN.fullmatch(path):
        raise PluginLoadError(
            f"registered {kind.name} '{name}' as {path!r}, which is not an import path: write "
            "'package.module:Class' (or pass the class itself)"
        )
    module = path.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:  # a parent package that does not import
        raise PluginLoadError(
            f"registered {kind.name} '{name}' as {path!r}, whose module cannot be found: "
            f"{_describe(exc)}"
        ) from exc
    if not found:
        raise PluginLoadError(
            f"registered {kind.name} '{name}' as {path!r}, but there is no module {module!r}"
        )


def _validate_registration(kind: PluginKind, name: Any, cls: Any) -> None:
    _validate_name(kind, name)
    if not (isinstance(cls, type) and issubclass(cls, kind.base)):
        raise PluginLoadError(
            f"registered {kind.name} '{name}' as {cls!r}, which is not a subclass of "
            f"{kind.base.__module__}.{kind.base.__qualname__}"
        )
    if not dataclasses.is_dataclass(cls.Config):
        raise PluginLoadError(f"{kind.name} '{name}': its Config {cls.Config!r} is not a dataclass")
    if any(field.name == "name" for field in dataclasses.fields(cls.Config)):
        raise PluginLoadError(
            f"{kind.name} '{name}': its Config has a field 'name', which is reserved for the "
            f"plugin name ({kind.name}.name); rename the field"
        )


def _import_path(path: str) -> Any:
    """The object an import path ``package.module:Name[.Attribute]`` names."""
    module_name, _, qualname = path.partition(":")
    value: Any = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        value = getattr(value, attribute)
    return value


def _source_of(entry_point: importlib.metadata.EntryPoint) -> PluginSource:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return PluginSource(entry_point.name)
    return PluginSource(entry_point.name, dist.metadata["Name"], dist.version)


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _autoload_enabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")


def _names_in(variable: str) -> set[str] | None:
    """The comma-separated entry-point or distribution names of an environment variable."""
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


_default_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, loading the installed plugins on first use."""
    global _default_registry
    if _default_registry is None:
        _default_registry = PluginRegistry()
        for module in named_modules():  # plugins the process that started this one named
            _default_registry.add_module_hooks(import_module_named(module))
    return _default_registry


@contextmanager
def use_registry(registry: PluginRegistry) -> Iterator[PluginRegistry]:
    """Make `registry` the process-wide one for the duration of a ``with`` block (tests)."""
    global _default_registry
    previous, _default_registry = _default_registry, registry
    try:
        yield registry
    finally:
        _default_registry = previous

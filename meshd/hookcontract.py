"""What each hook promises, read from its spec in :mod:`meshd.hookspecs`.

The facade in :mod:`meshd.plugins` calls every hook by its contract, so the
spec is the one source of truth for how a hook runs:

* ``@hookspec(firstresult=True)``: the call stops at the first accepted result;
* the return annotation: a hook is *sync* unless it names ``Awaitable``, and
  a result (awaited, for the others) must conform to the annotation; one that
  does not is logged, counted and ignored, like an implementation that raised.

The checks go as deep as a wrong result could hurt the caller: the outer type,
and the items of sequences and mappings (``Sequence[Service]``), not beyond.
Each annotation is turned into a check function once, because some hooks are
on a hot path (``meshd_route_filter`` runs per routing decision).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class HookContract:
    name: str
    firstresult: bool
    sync: bool
    check: Callable[[Any], bool]
    """Does a result, once awaited, fit the annotation? (None, meaning "no answer", is always accepted.)"""
    declared: str
    """The return annotation as the spec writes it, for messages."""

    def conforms(self, value: Any) -> bool:
        return value is None or self.check(value)


def read_contract(name: str, function: Callable[..., Any], opts: Mapping[str, Any]) -> HookContract:
    """The contract of hook ``name`` whose spec is ``function`` with pluggy's ``opts``."""
    returns = resolved_hints(function).get("return", Any)
    alternatives = [alt for alt in dict.fromkeys(_alternatives(returns)) if alt not in (None, type(None))]
    declared = function.__annotations__.get("return")
    return HookContract(
        name=name,
        firstresult=bool(opts.get("firstresult")),
        sync=not _names_awaitable(returns),
        check=_any_of([checker(alt) for alt in alternatives]),
        declared=declared if isinstance(declared, str) else describe_type(returns),
    )


def resolved_hints(function: Callable[..., Any]) -> dict[str, Any]:
    """``typing.get_type_hints`` of ``function``, with the names its module imports under TYPE_CHECKING."""
    module = sys.modules[function.__module__]
    namespace = {**_type_checking_names(module), **vars(module)}
    return typing.get_type_hints(function, globalns=namespace)


@cache
def _type_checking_names(module: types.ModuleType) -> dict[str, Any]:
    # The hookspecs import their result types only for type checkers (importing them at run time would
    # be circular: meshd.daemon imports the plugin facade); by the time a hook is called they all load.
    names: dict[str, Any] = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom):
                base = "." * stmt.level + (stmt.module or "")
                for alias in stmt.names:
                    names[alias.asname or alias.name] = _import_name(base, alias.name, module.__package__)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        names[alias.asname] = importlib.import_module(alias.name)
                    else:
                        top = alias.name.split(".")[0]
                        importlib.import_module(alias.name)
                        names[top] = importlib.import_module(top)
    return names


def _import_name(base: str, name: str, package: str | None) -> Any:
    source = importlib.import_module(base, package)
    if hasattr(source, name):
        return getattr(source, name)
    return importlib.import_module(f"{base}.{name}" if base.strip(".") else base + name, package)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_awaitable(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Awaitable or annotation is Awaitable


def _names_awaitable(annotation: Any) -> bool:
    if _is_union(annotation):
        return any(_names_awaitable(arg) for arg in typing.get_args(annotation))
    return _is_awaitable(annotation)


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    """``X | Awaitable[Y] | None`` -> ``(X, Y, NoneType)``: what a result may be once awaited."""
    if _is_union(annotation):
        return tuple(alt for arg in typing.get_args(annotation) for alt in _alternatives(arg))
    if _is_awaitable(annotation):
        args = typing.get_args(annotation)
        return _alternatives(args[0]) if args else (Any,)
    return (annotation,)


def conforms(value: Any, annotation: Any) -> bool:
    """Does ``value`` fit ``annotation``? Forms this cannot check (TypeVar, Literal...) pass."""
    return checker(annotation)(value)


def _always(value: Any) -> bool:
    return True


def _any_of(checks: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if not checks:
        return lambda value: value is None
    if len(checks) == 1:
        return checks[0]
    return lambda value: any(check(value) for check in checks)


@cache
def checker(annotation: Any) -> Callable[[Any], bool]:
    """A function telling whether a value fits ``annotation``, built once per annotation."""
    if annotation is Any:
        return _always
    if annotation is None or annotation is type(None):
        return lambda value: value is None
    if _is_union(annotation):
        return _any_of([checker(arg) for arg in typing.get_args(annotation)])
    origin = typing.get_origin(annotation)
    if origin is None:
        return _instance_checker(annotation) if isinstance(annotation, type) else _always
    args = typing.get_args(annotation)
    if origin is type:
        base = args[0] if args else Any
        if not isinstance(base, type):
            return lambda value: isinstance(value, type)
        return lambda value: isinstance(value, type) and issubclass(value, base)
    if not isinstance(origin, type):
        return _always
    # A string is a sequence of strings: the classic mistake for Sequence[str], refused.
    no_strings = issubclass(origin, Sequence) and not issubclass(origin, (str, bytes))

    # isinstance() against an ABC such as Sequence is slow next to an exact type test, and this runs
    # per routing decision: the usual answers (a list, a dict) are recognised by their type first.
    usual = frozenset(t for t in (list, tuple, dict) if issubclass(t, origin))

    def outer(value: Any) -> bool:
        if type(value) in usual:
            return True
        return isinstance(value, origin) and not (no_strings and isinstance(value, (str, bytes)))

    if issubclass(origin, Mapping) and len(args) == 2:
        key, item = checker(args[0]), checker(args[1])
        return lambda value: outer(value) and all(key(k) and item(v) for k, v in value.items())
    if issubclass(origin, (Sequence, Set)) and len(args) == 1 and args[0] is not Any:
        item = checker(args[0])
        return lambda value: outer(value) and all(item(v) for v in value)
    return outer


def _instance_checker(cls: type) -> Callable[[Any], bool]:
    if typing.Protocol in cls.__bases__ and not getattr(cls, "_is_runtime_protocol", False):
        members = _protocol_members(cls)
        return lambda value: all(hasattr(value, member) for member in members)
    # An ABC is also met by an object with its abstract methods: Prometheus accepts any object with
    # collect() as a Collector, and plugins rely on that.
    abstract = tuple(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        return lambda value: isinstance(value, cls) or all(callable(getattr(value, m, None)) for m in abstract)
    return lambda value: isinstance(value, cls)


@cache
def _protocol_members(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if typing.Protocol in klass.__bases__:
            names.update(vars(klass))
            names.update(getattr(klass, "__annotations__", {}))
    return frozenset(n for n in names if not n.startswith("_"))


def describe_type(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if _is_union(annotation):
        return " | ".join(describe_type(a) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if origin is not None:
        args = ", ".join(describe_type(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', origin)}[{args}]"
    return getattr(annotation, "__name__", repr(annotation))


def describe_value(value: Any) -> str:
    """What a wrong result was, for a log line: its type, never its content (it may hold a secret)."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    return f"a {type(value).__qualname__}"

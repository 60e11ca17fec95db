"""What each hook promises, read from its spec in :mod:`meshd.hookspecs`.

The facade in :mod:`meshd.plugins` calls every hook by its contract, so the
spec is the one source of truth for how a hook runs:

* ``@hookspec(firstresult=True)``: the call stops at the first accepted result;
* the return annotation: a hook is *sync* unless it names ``Awaitable``, and
  a result (awaited, for the others) must conform to the annotation; one that
  does not is logged, counted and ignored, like an implementation that raised.

The checks go as deep as a wrong result could hurt the caller: the outer type,
and the items of sequences and mappings (``Sequence[Service]``), not beyond.
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
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class HookContract:
    name: str
    firstresult: bool
    sync: bool
    accepts: tuple[Any, ...]
    """The types a result may have once awaited (None, meaning "no answer", is always accepted)."""
    declared: str
    """The return annotation as the spec writes it, for messages."""

    def conforms(self, value: Any) -> bool:
        return value is None or any(conforms(value, t) for t in self.accepts)


def read_contract(name: str, function: Callable[..., Any], opts: Mapping[str, Any]) -> HookContract:
    """The contract of hook ``name`` whose spec is ``function`` with pluggy's ``opts``."""
    returns = resolved_hints(function).get("return", Any)
    alternatives = _alternatives(returns)
    declared = function.__annotations__.get("return")
    return HookContract(
        name=name,
        firstresult=bool(opts.get("firstresult")),
        sync=not _names_awaitable(returns),
        accepts=tuple(dict.fromkeys(alternatives)),
        declared=declared if isinstance(declared, str) else describe_type(returns),
    )


def resolved_hints(function: Callable[..., Any]) -> dict[str, Any]:
    """``typing.get_type_hints`` of ``function``, with the names its module imports under TYPE_CHECKING."""
    module = sys.modules[function.__module__]
    namespace = {**_type_checking_names(module), **vars(module)}
    return typing.get_type_hints(function, globalns=namespace)


@lru_cache(maxsize=None)
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
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if _is_union(annotation):
        return any(conforms(value, arg) for arg in typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if origin is None:
        return _is_instance(value, annotation) if isinstance(annotation, type) else True
    args = typing.get_args(annotation)
    if origin is type:
        if not isinstance(value, type):
            return False
        base = args[0] if args else Any
        return not isinstance(base, type) or issubclass(value, base)
    if not isinstance(origin, type):
        return True
    if isinstance(value, (str, bytes)) and issubclass(origin, Sequence) and not issubclass(origin, (str, bytes)):
        return False  # a string is a sequence of strings: the classic mistake for Sequence[str]
    if not isinstance(value, origin):
        return False
    if issubclass(origin, Mapping) and len(args) == 2:
        return all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    if issubclass(origin, (Sequence, Set)) and len(args) == 1:
        return args[0] is Any or all(conforms(item, args[0]) for item in value)
    return True


def _is_instance(value: Any, cls: type) -> bool:
    if typing.Protocol in cls.__bases__ and not getattr(cls, "_is_runtime_protocol", False):
        return all(hasattr(value, member) for member in _protocol_members(cls))
    if isinstance(value, cls):
        return True
    # An ABC is also met by an object with its abstract methods: Prometheus accepts any object with
    # collect() as a Collector, and plugins rely on that.
    abstract = getattr(cls, "__abstractmethods__", ())
    return bool(abstract) and all(callable(getattr(value, name, None)) for name in abstract)


@lru_cache(maxsize=None)
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

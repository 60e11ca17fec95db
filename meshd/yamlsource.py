"""YAML loading that remembers where every value came from.

Operators fix configs by line number, so every loaded document carries a map
from key path (``("nats", "servers", 0)``) to the line it was written on.
Config errors then read ``meshd.yaml:14: nats.servers[0]: ...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


class EncryptedValue(str):
    """A config string written as ``!encrypted meshd:vN:...``.

    It stays ciphertext until the keys plugin decrypts it through the
    ``meshd_decrypt_secret`` hook; printing it never shows plaintext because
    it holds none.
    """

    __slots__ = ()


@dataclass
class Source:
    """A parsed YAML document and the line of every key path in it."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, keypath: KeyPath) -> int | None:
        """The line of ``keypath``, or of its nearest ancestor that has one."""
        while True:
            if keypath in self.lines:
                return self.lines[keypath]
            if not keypath:
                return None
            keypath = keypath[:-1]


class YamlError(Exception):
    """A file that is not readable YAML; ``line`` is 1-based when known."""

    def __init__(self, path: Path, message: str, line: int | None = None):
        self.path, self.message, self.line = path, message, line
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


class _Loader(yaml.SafeLoader):
    pass


def _construct_encrypted(loader: yaml.SafeLoader, node: yaml.Node) -> EncryptedValue:
    return EncryptedValue(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("!encrypted", _construct_encrypted)


def _walk(loader: _Loader, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise YamlError(Path(loader.name), "mapping keys must be scalars", key_node.start_mark.line + 1)
            if key in out:
                raise YamlError(Path(loader.name), f"duplicate key {key!r}", key_node.start_mark.line + 1)
            key = str(key) if not isinstance(key, str) else key
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _walk(loader, value_node, path + (key,), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, child, path + (i,), lines) for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, path: Path) -> Source:
    """Parse ``text`` as one YAML document; raise :class:`YamlError` on bad syntax."""
    loader = _Loader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = _walk(loader, node, (), lines) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YamlError(path, message, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(path, str(exc)) from None
    finally:
        loader.dispose()
    return Source(path=path, data=data, lines=lines)


def load_yaml(path: str | os.PathLike[str]) -> Source:
    """Read and parse a YAML file; unreadable files raise :class:`YamlError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(path, "file not found") from None
    except IsADirectoryError:
        raise YamlError(path, "is a directory, not a file") from None
    except PermissionError:
        raise YamlError(path, "permission denied") from None
    except UnicodeDecodeError as exc:
        raise YamlError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_yaml(text, path)


def format_keypath(keypath: KeyPath) -> str:
    """``("nats", "servers", 0)`` -> ``nats.servers[0]``."""
    out = ""
    for part in keypath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"

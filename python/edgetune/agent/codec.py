"""Typed dataclasses to and from JSON values, for the files an agent reads back (the plan file,
its state file): every field is required on reading and checked against its declared type, so a
field added to a dataclass travels without anyone touching this module, and a file that lacks it,
or holds a value of another type, is refused with the path of the first value rejected."""

import types
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from edgetune.errors import EdgetuneError


class Undecodable(EdgetuneError):
    """A JSON value does not describe the dataclass it should decode to; the message names where
    (`file.field[index]`). Callers re-raise it as their own file's error."""


def encode(value: Any) -> Any:
    """A dataclass tree as JSON values: bytes as hex, paths and tuples as strings and lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(kind: Any, value: Any, where: str) -> Any:
    """The inverse of `encode` for the declared type `kind`; names the first value it rejects.
    A dataclass's own checks (`__post_init__` raising ValueError) are reported the same way."""
    if is_dataclass(kind):
        if not isinstance(value, dict):
            raise Undecodable(f"{where}: expected an object for {kind.__name__}, got {value!r}")
        names = {f.name for f in fields(kind)}
        missing, unknown = names - set(value), set(value) - names
        if missing or unknown:
            raise Undecodable(
                f"{where}: {kind.__name__} fields missing {sorted(missing)}, unknown "
                f"{sorted(unknown)}"
            )
        hints = get_type_hints(kind)
        decoded = {n: decode(hints[n], value[n], f"{where}.{n}") for n in names}
        try:
            return kind(**decoded)
        except (TypeError, ValueError) as exc:
            raise Undecodable(f"{where}: {exc}") from None
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (other,) = [a for a in args if a is not type(None)]
        return decode(other, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise Undecodable(f"{where}: expected a list, got {value!r}")
        return origin(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        if value not in args:
            raise Undecodable(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if kind is bytes:
        if not isinstance(value, str):
            raise Undecodable(f"{where}: expected hex, got {value!r}")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise Undecodable(f"{where}: {value!r} is not hex") from None
    if kind is Path:
        if not isinstance(value, str):
            raise Undecodable(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and not _is(value, kind):
        raise Undecodable(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))

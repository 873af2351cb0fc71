"""`--param KEY=VALUE` settings as typed dataclass fields: the one converter methods and trainers share.

A method's `options_class` and a trainer's config are dataclasses; a value
from the command line (a string) or from a JSON config (already a number,
list, ...) is converted to the type its field declares:

* `int`, `float`: `3`, `1e-4` (a float field also takes an integer);
* `bool`: yes/no, on/off, true/false, 1/0 (any case); anything else is refused,
  so a typo never silently means true;
* `list[T]` / `tuple[T, ...]`: a comma list (`4,8,16` -> [4, 8, 16]) or a JSON
  list, each element converted to T; an empty string is the empty list;
* `T | None`: `none`/`null` (or an empty string) -> None, else T;
* `str` and `Any`: kept as given.

A wrong key or a value that does not convert raises AnoncliError (exit 2) with
one line naming the key, e.g. `--param amp=maybe: expected one of yes, no, ...`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any

from anoncli.errors import AnoncliError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
NONE_WORDS = ("none", "null", "")


def _is_optional(kind: Any) -> tuple[bool, Any]:
    """(whether `kind` admits None, the type without None)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        optional = len(args) < len(typing.get_args(kind))
        return optional, functools.reduce(operator.or_, args)
    return False, kind


def _describe(kind: Any) -> str:
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is bool:
        return "one of " + ", ".join(TRUE_WORDS + FALSE_WORDS)
    origin = typing.get_origin(kind) or (kind if kind in (list, tuple) else None)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        return (
            f"a comma list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a comma list"
        )
    return getattr(kind, "__name__", str(kind))


def convert(name: str, value: Any, kind: Any) -> Any:
    """`value` (a string from the command line, or a JSON value) as the type hint `kind`.

    Raises AnoncliError naming `--param name=value` and what was expected.
    """
    optional, kind = _is_optional(kind)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)):
        return None
    try:
        return _convert(value, kind)
    except (TypeError, ValueError):
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        raise AnoncliError(f"--param {name}={shown}: expected {_describe(kind)}") from None


def _convert(value: Any, kind: Any) -> Any:
    if kind is Any or kind is object:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:  # "flase" or "maybe" must not silently mean true
            raise ValueError(value)
        return word in TRUE_WORDS
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value) if not isinstance(value, str) else int(value.strip())
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(value)
        return str(value)
    origin = typing.get_origin(kind) or (kind if kind in (list, tuple) else None)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        element = args[0] if args else Any
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",")] if value.strip() else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ValueError(value)
        converted = [_convert(item, element) for item in items]
        return converted if origin is list else tuple(converted)
    if origin is typing.Union or isinstance(kind, types.UnionType):
        for arg in typing.get_args(kind):
            try:
                return _convert(value, arg)
            except (TypeError, ValueError):
                continue
        raise ValueError(value)
    return kind(value)


def field_types(cls: type) -> dict[str, Any]:
    """The dataclass `cls`'s fields and their resolved type hints."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_params(
    cls: type, params: Mapping[str, Any], base: Any = None, strict: bool = False, what: str = "--param"
) -> Any:
    """An instance of the dataclass `cls`: `base` (an instance, or the defaults) with `params` converted by type.

    With `strict`, a key `cls` does not declare raises AnoncliError naming it and
    the known keys; without, such keys are ignored (a method reads them itself).
    `what` names the source in that message (`--param`, a config file's path).
    """
    types_ = field_types(cls)
    if strict:
        unknown = [key for key in params if key not in types_]
        if unknown:
            raise AnoncliError(f"{what} {unknown[0]}: unknown setting (known: {', '.join(sorted(types_))})")
    values = {key: convert(key, params[key], kind) for key, kind in types_.items() if key in params}
    if base is None:
        return cls(**values)
    return dataclasses.replace(base, **values)

"""Pydantic ``ValidationError`` -> one plain-words :class:`Diagnostic` per problem, at the right place.

Pydantic's ``loc`` tuples mix data keys with schema tags (``'list[str]'``, ``"literal['auto']"``,
``'[key]'``); the data path is recovered by walking the input data along the ``loc`` and stopping
where it no longer matches. Errors that pydantic reports once per union member for the same value
are merged into one ("expected a list or a string"). Whole-model checks whose cause is one key
(``command`` vs ``shell``, a probe's ``period``) are pointed at that key.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from deploy_code.config.model import NAME_RE, PORT_NAME_RE, ProjectSpec
from deploy_code.config.source import DataPath, SourceMap
from deploy_code.errors import Diagnostic, ErrorCode

__all__ = ["MAX_DIAGNOSTICS", "cap_diagnostics", "dotted", "validation_diagnostics"]

MAX_DIAGNOSTICS = 100  # nobody reads more; a garbage file must not produce a million lines

DURATION_HINT = "durations are 100ms, 5s, 2m, 1h or plain seconds (e.g. 2.5)"

# Model-level validators whose message is about one key: point the diagnostic at that key.
_MESSAGE_KEYS = (
    ("command is a string but shell is false", "command"),
    ("period must be greater than 0", "period"),
)
_PATTERN_WORDS = {
    NAME_RE: "names start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
    " (at most 63 characters)",
    PORT_NAME_RE: "port names start with a letter and contain only letters, digits and '_'"
    " (at most 32 characters)",
}
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "none_required": "empty (null)",
}


def dotted(path: DataPath) -> str:
    """``("services", "api", "command", 0)`` -> ``services.api.command[0]`` (``<file>`` for the root)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _data_path(data: Any, loc: Sequence[int | str]) -> DataPath:
    """The longest prefix of ``loc`` that exists in ``data`` (schema tags are dropped)."""
    path: list[object] = []
    node = data
    for part in loc:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_list or (isinstance(node, dict) and part in node)):
            break
        node = node[part]
        path.append(part)
    return tuple(path)


def _unwrap_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if typing.get_origin(tp) not in (typing.Annotated, typing.Union, types.UnionType):
        return None
    for arg in typing.get_args(tp):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _child_type(tp: Any, part: object) -> Any:
    """The annotation of ``part`` inside a value of annotation ``tp``, or None."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return None if field is None else field.annotation
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _child_type(args[0], part)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found = _child_type(arg, part)
            if found is not None:
                return found
        return None
    if origin is dict:
        return args[1]
    if origin is list and isinstance(part, int):
        return args[0]
    return None


def _model_at(path: DataPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (for did-you-mean over its fields)."""
    tp: Any = ProjectSpec
    for part in path:
        tp = _child_type(tp, part)
        if tp is None:
            return None
    return _unwrap_model(tp)


def _what(err: Any) -> str:
    """Plain words for what a single pydantic error expected."""
    etype = err["type"]
    if etype in _EXPECTED:
        return _EXPECTED[etype]
    if etype == "literal_error":
        return f"one of {err.get('ctx', {}).get('expected', '?')}"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _diagnostic(source: SourceMap, path: DataPath, errs: list[Any]) -> Diagnostic:
    """One diagnostic for one data path and its pydantic errors (several for union members)."""
    first = errs[0]
    etype = first["type"]
    where = dotted(path)
    hint: str | None = None
    if etype == "missing":
        field = str(first["loc"][-1])
        message = f"{where}: missing required key '{field}'"
    elif etype == "extra_forbidden":
        key = first["loc"][-1]
        message = f"{dotted(path[:-1])}: unknown key {key!r}"
        model = _model_at(path[:-1])
        if model is not None:
            # difflib indexes every character of the word: a 2 MB key would cost ~70 MB and 0.3 s.
            word = str(key)
            close = difflib.get_close_matches(word, list(model.model_fields), n=1) if len(word) <= 100 else []
            hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(model.model_fields)
    elif etype == "string_pattern_mismatch" and first["loc"][-1:] == ("[key]",):
        pattern = str(first.get("ctx", {}).get("pattern", ""))
        message = f"{where}: invalid name {path[-1]!r}"
        hint = _PATTERN_WORDS.get(pattern, f"must match {pattern}")
    elif first["loc"][-1:] == ("[key]",):
        message = f"{where}: invalid key {_short(path[-1])}: expected {_what(first)}"
    elif etype in _EXPECTED or etype == "literal_error" or len(errs) > 1:
        wanted = " or ".join(dict.fromkeys(_what(e) for e in errs))
        message = f"{where}: expected {wanted}, got {_short(first.get('input'))}"
    else:
        message = f"{where}: {_what(first)}"
    if "duration" in message:
        hint = DURATION_HINT + (" or auto" if path[-1:] == ("ready",) else "")
    for needle, key in _MESSAGE_KEYS:
        if needle in message and (*path, key) in source:
            path = (*path, key)
            break
    return Diagnostic(ErrorCode.E002, message, source.locate(*path), hint)


def validation_diagnostics(exc: ValidationError, data: Any, source: SourceMap) -> list[Diagnostic]:
    """Map a pydantic ``ValidationError`` on ``data`` to E002 diagnostics located with ``source``."""
    groups: dict[tuple[DataPath, str], list[Any]] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        etype = err["type"]
        if etype == "missing":
            key: tuple[DataPath, str] = (_data_path(data, loc[:-1]), f"missing:{loc[-1]}")
        elif etype == "extra_forbidden":
            key = (_data_path(data, loc), "extra")
        elif loc[-1:] == ("[key]",):
            key = (_data_path(data, loc), "key")
        else:
            key = (_data_path(data, loc), "value")
        groups.setdefault(key, []).append(err)
    return [_diagnostic(source, path, errs) for (path, _), errs in groups.items()]


def cap_diagnostics(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Sort by position and keep at most :data:`MAX_DIAGNOSTICS`, saying how many were left out."""

    def order(d: Diagnostic) -> tuple[str, int, int]:
        loc = d.location
        if loc is None:
            return ("", 0, 0)
        return (loc.file, loc.line or 0, loc.column or 0)

    ordered = sorted(diags, key=order)
    if len(ordered) <= MAX_DIAGNOSTICS:
        return ordered
    left = len(ordered) - MAX_DIAGNOSTICS + 1
    kept = ordered[: MAX_DIAGNOSTICS - 1]
    return [*kept, Diagnostic(ErrorCode.E002, f"... and {left} more problems not shown")]

"""YAML text -> plain data and a :class:`SourceMap`, safely and within declared bounds.

The document is built from the parser's *event stream* with an explicit stack instead of PyYAML's
recursive composer, so that

* every value gets a position (keys of mappings, starts of sequence items) for file:line:col errors;
* nesting deeper than :data:`MAX_DEPTH` is an error, never a ``RecursionError``;
* duplicate keys are an error at the second occurrence (PyYAML silently keeps the last);
* aliases are bounded twice: at most :data:`MAX_ALIASES` of them, and the *expanded* document at most
  :data:`MAX_NODES` values, so a "billion laughs" file fails in microseconds instead of exploding later
  in validation;
* only the YAML 1.1 core tags are accepted (``!!python/...`` and custom tags are errors).

Aliased values are shared, never copied, and nothing here mutates them afterwards.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from deploy_code.config.source import DataPath, SourceMap
from deploy_code.errors import ConfigError, ErrorCode, Location

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_NODES", "parse_yaml"]

MAX_DEPTH = 64  # a deploy file nests ~6 levels; 64 leaves room and stops `[[[[...` floods early
MAX_ALIASES = 100  # anchors are for sharing a few defaults, not for generating data
MAX_NODES = 200_000  # values after alias expansion; real files have hundreds

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp", "binary"))
_MAP_TAGS = frozenset({None, "!", _TAG + "map"})
_SEQ_TAGS = frozenset({None, "!", _TAG + "seq"})
_MERGE_TAG = _TAG + "merge"


class _Merge:
    """Stands for a ``<<`` merge key while its mapping is being built."""

    def __repr__(self) -> str:
        return "<<"


_MERGE = _Merge()
_NO_KEY = object()


class _Problem(Exception):
    """A YAML-level problem at a 1-based position; turned into an E002 diagnostic."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def _pos(event: Any) -> tuple[int, int]:
    mark = event.start_mark
    return int(mark.line) + 1, int(mark.column) + 1


def _problem(message: str, pos: tuple[int, int]) -> _Problem:
    return _Problem(message, pos[0], pos[1])


class _Frame:
    """An open mapping or sequence on the builder's stack."""

    __slots__ = ("anchor", "is_map", "key", "key_pos", "merges", "path", "size", "value")

    def __init__(self, *, is_map: bool, path: DataPath, anchor: str | None) -> None:
        self.is_map = is_map
        self.path = path
        self.anchor = anchor
        self.value: Any = {} if is_map else []
        self.size = 1
        self.key: object = _NO_KEY
        self.key_pos = (0, 0)
        self.merges: list[tuple[Any, tuple[int, int]]] = []


class _Builder:
    """Consumes parser events and builds the document, recording positions as it goes."""

    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.positions: dict[DataPath, tuple[int, int]] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.aliases = 0
        self.total = 0
        self.documents = 0
        self.root: Any = None

    # -- events -------------------------------------------------------------------------------------
    def feed(self, event: Any) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise _problem(
                    "only one YAML document per file is allowed (found a second '---')", _pos(event)
                )
        elif isinstance(event, yaml.ScalarEvent):
            self._scalar(event)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self._start(event, is_map=isinstance(event, yaml.MappingStartEvent))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            self._end()

    def _scalar(self, event: Any) -> None:
        pos = _pos(event)
        tag = event.tag
        if tag is None or tag == "!":
            tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        top = self.stack[-1] if self.stack else None
        if top is not None and top.is_map and top.key is _NO_KEY and tag == _MERGE_TAG:
            self._set_key(top, _MERGE, pos)
            return
        if tag not in _SCALAR_TAGS:
            raise _problem(f"unsupported tag {tag!r} (only plain YAML values are allowed)", pos)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            value = SafeConstructor.yaml_constructors[tag](_CONSTRUCTOR, node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise _problem(f"invalid value {event.value[:40]!r}: {_reason(exc)}", pos) from None
        if top is not None and top.is_map and top.key is _NO_KEY:
            self._set_key(top, value, pos)
            if event.anchor is not None:
                self.anchors[event.anchor] = (value, 1)
            return
        self._add(value, 1, event.anchor, pos, fresh=1)

    def _alias(self, event: Any) -> None:
        pos = _pos(event)
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise _problem(f"too many aliases (more than {MAX_ALIASES})", pos)
        if event.anchor not in self.anchors:
            raise _problem(f"unknown or unfinished anchor &{event.anchor} (aliases must follow it)", pos)
        value, size = self.anchors[event.anchor]
        top = self.stack[-1] if self.stack else None
        if top is not None and top.is_map and top.key is _NO_KEY:
            self._set_key(top, value, pos)
            return
        self._add(value, size, None, pos, fresh=size)

    def _start(self, event: Any, *, is_map: bool) -> None:
        pos = _pos(event)
        top = self.stack[-1] if self.stack else None
        if top is not None and top.is_map and top.key is _NO_KEY:
            raise _problem("mapping keys must be plain values, not lists or mappings", pos)
        if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
            raise _problem(f"unsupported tag {event.tag!r} (only plain YAML values are allowed)", pos)
        if len(self.stack) >= MAX_DEPTH:
            raise _problem(f"nesting is deeper than {MAX_DEPTH} levels", pos)
        path = self._child_path(top, pos)
        self.stack.append(_Frame(is_map=is_map, path=path, anchor=event.anchor))

    def _end(self) -> None:
        frame = self.stack.pop()
        if frame.is_map and frame.merges:
            self._apply_merges(frame)
        self._add(frame.value, frame.size, frame.anchor, None, fresh=1, path=frame.path)

    # -- building -----------------------------------------------------------------------------------
    def _set_key(self, top: _Frame, key: object, pos: tuple[int, int]) -> None:
        if not isinstance(key, Hashable) or isinstance(key, list | dict):
            raise _problem("mapping keys must be plain values, not lists or mappings", pos)
        if key is not _MERGE and key in top.value:
            first = self.positions.get((*top.path, key))
            where = f" (first defined at line {first[0]}, column {first[1]})" if first else ""
            raise _problem(f"duplicate key {key!r}{where}", pos)
        top.key = key
        top.key_pos = pos

    def _child_path(self, top: _Frame | None, pos: tuple[int, int]) -> DataPath:
        """Path of the next value under ``top``; records its position."""
        if top is None:
            path: DataPath = ()
            self.positions[path] = pos
        elif top.is_map:
            path = (*top.path, top.key)
            if top.key is not _MERGE:
                self.positions[path] = top.key_pos
        else:
            path = (*top.path, len(top.value))
            self.positions[path] = pos
        return path

    def _add(
        self,
        value: Any,
        size: int,
        anchor: str | None,
        pos: tuple[int, int] | None,
        *,
        fresh: int,
        path: DataPath | None = None,
    ) -> None:
        """Attach a finished value to the open collection (or make it the root).

        ``size`` is the value's expanded size (for its parent and for anchors); ``fresh`` is how much it
        adds to the document total: 1 for a new scalar or collection (its children were counted as they
        arrived), the whole expanded size for an alias.
        """
        top = self.stack[-1] if self.stack else None
        if path is None and pos is not None:
            path = self._child_path(top, pos)
            if top is not None and not top.is_map and isinstance(value, str):
                self.positions.setdefault((*top.path, value), pos)
        self.total += fresh
        if self.total > MAX_NODES:
            where = self.positions.get(path or ())
            raise _Problem(
                f"the document expands to more than {MAX_NODES} values (too many aliases or entries)",
                *(where or (None, None)),
            )
        if anchor is not None:
            self.anchors[anchor] = (value, size)
        if top is None:
            self.root = value
            return
        top.size += size
        if not top.is_map:
            top.value.append(value)
        elif top.key is _MERGE:
            top.merges.append((value, top.key_pos))
            top.key = _NO_KEY
        else:
            top.value[top.key] = value
            top.key = _NO_KEY

    def _apply_merges(self, frame: _Frame) -> None:
        # YAML merge keys: explicit keys win; among merged mappings the earlier one wins (as PyYAML).
        for value, pos in frame.merges:
            sources = value if isinstance(value, list) else [value]
            if not sources or not all(isinstance(s, dict) for s in sources):
                raise _problem("a merge key (<<) needs a mapping or a list of mappings", pos)
            for source in sources:
                for key, item in source.items():
                    if key not in frame.value:
                        frame.value[key] = item
                        self.positions.setdefault((*frame.path, key), pos)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        return str(exc.problem)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _events(text: str) -> Iterator[Any]:
    loader = _LOADER(text)
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


def _line_col(text: str, index: int) -> tuple[int, int]:
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _yaml_error_problem(exc: yaml.YAMLError, text: str) -> _Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark is not None:
            return _Problem(f"invalid YAML: {message}", int(mark.line) + 1, int(mark.column) + 1)
        return _Problem(f"invalid YAML: {message}")
    if isinstance(exc, yaml.reader.ReaderError):
        line, col = _line_col(text, int(exc.position))
        return _Problem(f"invalid YAML: {exc.reason} (character {exc.character!r})", line, col)
    return _Problem(f"invalid YAML: {_reason(exc)}")


def parse_yaml(text: str, filename: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data (dict/list/scalars) and its source positions.

    Args:
        text: the document.
        filename: shown in diagnostics.

    Returns:
        ``(data, source_map)``; ``data`` is None for an empty document.

    Raises:
        ConfigError: E002 at the offending position for syntax errors, duplicate keys, unsupported
            tags, too deep nesting, too many aliases or too large an expansion.
    """
    builder = _Builder()
    try:
        for event in _events(text):
            builder.feed(event)
    except _Problem as found:
        location = Location(filename, found.line, found.column)
        raise ConfigError(found.message, code=ErrorCode.E002, location=location) from None
    except yaml.YAMLError as exc:
        mapped = _yaml_error_problem(exc, text)
        location = Location(filename, mapped.line, mapped.column)
        raise ConfigError(mapped.message, code=ErrorCode.E002, location=location) from None
    except (UnicodeError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(
            f"cannot parse the file: {_reason(exc)}", code=ErrorCode.E002, location=Location(filename)
        ) from None
    return builder.root, SourceMap(filename, builder.positions)

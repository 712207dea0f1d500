"""Where each value of the file came from: a map from data paths to 1-based ``(line, column)``.

A path is the tuple of mapping keys and sequence indices that leads from the top of the document to a
value, e.g. ``("services", "api", "depends_on", "kv")``. For an entry of a mapping the position is
that of its *key*; for an item of a sequence it is the item's own start. A scalar string item of a
sequence is also recorded under its value (``depends_on: [kv]`` answers ``(..., "depends_on",
"kv")``), so callers can name list entries the way they name mapping keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from deploy_code.errors import Location

__all__ = ["DataPath", "SourceMap"]

DataPath = tuple[object, ...]
"""Mapping keys (usually ``str``) and sequence indices (``int``) from the document root."""


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Positions of the values of one file.

    Args:
        file: the file name as shown to people (diagnostics print it first).
        positions: path -> ``(line, column)``, both 1-based. The empty path is the document itself.
    """

    file: str
    positions: Mapping[DataPath, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))

    def __contains__(self, path: object) -> bool:
        return path in self.positions

    def position(self, path: DataPath) -> tuple[int, int] | None:
        """The exact position recorded for ``path``, or None."""
        return self.positions.get(path)

    def nearest(self, path: DataPath) -> DataPath:
        """The longest prefix of ``path`` (possibly ``path`` itself) that has a recorded position."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.positions:
                return path[:end]
        return ()

    def locate(self, *path: object) -> Location:
        """Location of ``path``; falls back to the nearest known parent, then to the file alone."""
        pos = self.positions.get(self.nearest(tuple(path)))
        if pos is None:
            return Location(self.file)
        return Location(self.file, pos[0], pos[1])

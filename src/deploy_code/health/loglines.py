"""``LogLineMatcher``: ready once a line of the replica's output matches a pattern."""

from __future__ import annotations

import re

__all__ = ["MAX_LINE_CHARS", "LogLineMatcher"]

# Only the start of an overlong line is searched, so one pathological line cannot stall the loop.
MAX_LINE_CHARS = 64 * 1024


class LogLineMatcher:
    """Fed by the supervisor with every output line of one replica; remembers whether one matched.

    Args:
        pattern: a Python regular expression, searched (not anchored) in each line.

    Raises:
        re.error: ``pattern`` does not compile (config validation rejects such patterns earlier).
    """

    __slots__ = ("_regex", "matched")

    def __init__(self, pattern: str) -> None:
        self._regex = re.compile(pattern)
        self.matched = False

    @property
    def pattern(self) -> str:
        """The pattern searched for."""
        return self._regex.pattern

    def feed(self, line: str) -> None:
        """Look at one line; sets :attr:`matched` once a line matches. Free once matched."""
        if self.matched:
            return
        if self._regex.search(line, 0, MAX_LINE_CHARS) is not None:
            self.matched = True

    def reset(self) -> None:
        """Forget the match (e.g. when the replica restarts)."""
        self.matched = False

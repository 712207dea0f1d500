"""The fuzz tally: every input the fuzz tests tried and what it got, written for the closing note.

Each test records one outcome per input: a code (``E002``, ``404 S001``...) when it was refused with
a coded error, ``accepted`` when it was valid, ``uncoded ...`` for the few refusals that come from
below our code (the HTTP parser's plain-text 400); anything else fails its test.
At the end of the session ``test-artifacts/fuzz_tally.json`` holds the counts per test and in all.

``DEPLOY_CODE_FUZZ_EXAMPLES=N`` raises hypothesis's examples per test for a longer hunt; the default
keeps ``tests/fuzz`` well under a minute.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
_CODED = re.compile(r"\b[ES]\d{3}\b|^\d{3} coded$")
EXAMPLES = int(os.environ.get("DEPLOY_CODE_FUZZ_EXAMPLES", "0"))


def examples(default: int) -> int:
    """hypothesis ``max_examples``: ``default``, or ``DEPLOY_CODE_FUZZ_EXAMPLES`` when set."""
    return EXAMPLES or default


class Tally:
    """Outcome counts per group of inputs."""

    def __init__(self) -> None:
        self.groups: dict[str, Counter[str]] = {}

    def record(self, group: str, outcome: str) -> None:
        self.groups.setdefault(group, Counter())[outcome] += 1

    def summary(self) -> dict[str, object]:
        total: Counter[str] = Counter()
        for counts in self.groups.values():
            total.update(counts)
        coded = sum(n for outcome, n in total.items() if _CODED.search(outcome))
        return {
            "tried": sum(total.values()),
            "accepted": total.get("accepted", 0),
            "coded_errors": coded,
            "uncoded": sum(n for outcome, n in total.items() if outcome.startswith("uncoded")),
            "by_outcome": dict(sorted(total.items())),
            "groups": {name: dict(sorted(c.items())) for name, c in sorted(self.groups.items())},
        }


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    """The session's tally; written to ``test-artifacts/fuzz_tally.json`` at the end."""
    found = Tally()
    yield found
    if found.groups:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "fuzz_tally.json").write_text(json.dumps(found.summary(), indent=2) + "\n")

"""LogLineMatcher and the log_line check."""

from __future__ import annotations

import re

import pytest

from deploy_code.config.model import ProbeSpec
from deploy_code.health import CheckTarget, HttpClientFactory, LogLineMatcher, make_check
from deploy_code.health.loglines import MAX_LINE_CHARS

TARGET = CheckTarget(host="127.0.0.1", ports={}, env={}, cwd="/")


def test_matches_once_a_line_matches_and_stays_matched() -> None:
    matcher = LogLineMatcher(r"listening on port \d+")
    matcher.feed("starting up")
    assert not matcher.matched
    matcher.feed("INFO listening on port 8080\n")
    assert matcher.matched
    matcher.feed("something else")
    assert matcher.matched
    matcher.reset()
    assert not matcher.matched
    matcher.feed("listening on port 1")
    assert matcher.matched


def test_search_is_unanchored_and_respects_the_regex() -> None:
    matcher = LogLineMatcher(r"^ready$")
    matcher.feed("not ready")
    assert not matcher.matched
    matcher.feed("ready")
    assert matcher.matched


def test_only_the_start_of_an_overlong_line_is_searched() -> None:
    matcher = LogLineMatcher("READY")
    matcher.feed("x" * MAX_LINE_CHARS + "READY")
    assert not matcher.matched
    matcher.feed("x" * (MAX_LINE_CHARS - 5) + "READY")
    assert matcher.matched


def test_invalid_pattern_raises() -> None:
    with pytest.raises(re.error):
        LogLineMatcher("(")


async def test_log_line_check_follows_the_matcher() -> None:
    matcher = LogLineMatcher("ready")
    spec = ProbeSpec.model_validate({"log_line": {"pattern": "ready"}})
    check = make_check(spec, TARGET, http=HttpClientFactory(), log=matcher)
    result = await check()
    assert not result.ok
    assert "ready" in result.message
    matcher.feed("server ready")
    result = await check()
    assert result.ok


def test_log_line_check_needs_a_matcher() -> None:
    spec = ProbeSpec.model_validate({"log_line": {"pattern": "ready"}})
    with pytest.raises(ValueError, match="LogLineMatcher"):
        make_check(spec, TARGET, http=HttpClientFactory())

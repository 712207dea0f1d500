"""Whatever the input, loading ends in a Project or a ConfigError: never another exception, never slow.

Random text, YAML-ish token soups, random data dumped as YAML, mutations of a valid file, and a few
hostile inputs chosen by hand (billion laughs, python tags, bad bytes, deep nesting, huge files).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy_code.config import Project, load, load_text
from deploy_code.errors import ConfigError, ErrorCode

NOWHERE = Path("/nonexistent/deploy-code-fuzz")  # env_file / working_dir lookups find nothing
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = """\
services:
  kv:
    command: [kv, "${ports.main}"]
    ports: {main: auto}
    health: {readiness: {tcp: {port: main}, period: 1s}}
  api:
    command: [api, "${services.kv.host}:${services.kv.ports.main}", "${LEVEL:-info}"]
    replicas: 2
    ports: {http: auto}
    depends_on: {kv: healthy}
    restart: {policy: always, backoff: {initial: 100ms}}
  web:
    command: "web ${replica} $$HOME"
    shell: true
    ports: {http: 8080}
    depends_on: [api]
"""

KEYS = [
    "version", "name", "settings", "services", "command", "shell", "working_dir", "env", "env_file",
    "ports", "resources", "health", "depends_on", "replicas", "restart", "timeouts", "priority",
    "stop_signal", "startup", "readiness", "liveness", "tcp", "http", "exec", "log_line", "notify",
    "port", "path", "period", "timeout", "policy", "backoff", "port_range", "state_dir", "api", "kv",
]  # fmt: skip
TOKENS = [
    *KEYS, ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "\n", "  ", "    ", "&a ", "*a", "<<: ", "? ",
    "!!python/object/apply:os.system ", "!!str ", "!x ", "'", '"', "#", "|", ">", "---", "...", "${",
    "${ports.main}", "${services.kv.host}", "$$", "auto", "8080", "1s", "true", "null", "~", "\t",
    "%YAML 1.1",
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(["auto", "5s", "100ms", "healthy", "${ports.main}", "SIGTERM"]),
)  # fmt: skip
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=40,
)


def _check(text: str) -> None:
    try:
        project = load_text(text, base_dir=NOWHERE, environ={})
    except ConfigError as exc:
        assert exc.diagnostics
        assert all(isinstance(d.code, ErrorCode) for d in exc.diagnostics)
        str(exc)
        exc.to_dict()
    else:
        assert isinstance(project, Project)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _check(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_token_soup(text: str) -> None:
    _check(text)


@FUZZ
@given(data)
def test_random_data(value: Any) -> None:
    _check(yaml.safe_dump(value))


@FUZZ
@given(st.dictionaries(st.sampled_from(["api", "kv", "x.y-z"]), data, max_size=3), data)
def test_random_services(services: Any, extra: Any) -> None:
    _check(yaml.safe_dump({"services": services, "settings": extra}))


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(VALID)), st.integers(0, 3), st.sampled_from(TOKENS)), max_size=4)
)
def test_mutated_valid_file(edits: list[tuple[int, int, str]]) -> None:
    text = VALID
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    _check(text)


def test_the_valid_file_is_valid() -> None:
    load_text(VALID, base_dir=NOWHERE, environ={})


def _fast_e002(text: str) -> ConfigError:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_text(text, base_dir=NOWHERE, environ={})
    assert time.perf_counter() - started < 2.0
    assert info.value.code is ErrorCode.E002
    return info.value


def test_billion_laughs() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    _fast_e002("\n".join(lines) + "\nservices: {x: {command: *i}}\n")


def test_python_object_tag() -> None:
    assert "unsupported tag" in _fast_e002("!!python/object/apply:os.system ['true']\n").message
    assert "unsupported tag" in _fast_e002("services: !!python/object/apply:os.system ['true']\n").message


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "deploy-code.yaml"
    path.write_bytes(b"services:\n  \xc3\x28: {command: [x]}\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.code is ErrorCode.E002 and "UTF-8" in info.value.message


def test_deep_nesting() -> None:
    _fast_e002("[" * 2000 + "]" * 2000)
    _fast_e002("services: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n")


def test_twenty_megabyte_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy-code.yaml"
    path.write_bytes(b"# padding\n" * (2 * 2**20))
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load(path)
    assert time.perf_counter() - started < 2.0
    assert info.value.code is ErrorCode.E002 and "too large" in info.value.message


def test_many_values_within_size_limit() -> None:
    # ~6 MiB of a flat list: under the byte limit, over the value limit; must fail fast, not crawl.
    _fast_e002("services: [" + "1," * 3_000_000 + "1]\n")

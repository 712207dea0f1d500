"""YAML -> data + positions: marks, duplicate keys, tags, aliases, depth."""

from __future__ import annotations

import time

import pytest

from deploy_code.config.yamlread import MAX_ALIASES, MAX_DEPTH, parse_yaml
from deploy_code.errors import ConfigError, ErrorCode


def _error(text: str) -> tuple[ErrorCode, str, str]:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    err = info.value
    return err.code, str(err.location), err.message


def test_positions_of_keys_and_items() -> None:
    data, source = parse_yaml("a: 1\nb:\n  - x\n  - {c: 2}\n", "f.yaml")
    assert data == {"a": 1, "b": ["x", {"c": 2}]}
    assert source.position(()) == (1, 1)
    assert source.position(("a",)) == (1, 1)
    assert source.position(("b", 0)) == (3, 5)
    assert source.position(("b", 1, "c")) == (4, 6)
    # scalar string items are also addressable by value
    assert source.position(("b", "x")) == (3, 5)


def test_locate_falls_back_to_nearest_parent() -> None:
    _, source = parse_yaml("a:\n  b: 1\n", "f.yaml")
    assert str(source.locate("a", "b", "c", 3)) == "f.yaml:2:3"
    assert str(source.locate("zzz")) == "f.yaml:1:1"


def test_empty_document_is_none() -> None:
    assert parse_yaml("", "f.yaml")[0] is None
    assert parse_yaml("# only a comment\n", "f.yaml")[0] is None


def test_duplicate_key_is_reported_at_the_second() -> None:
    code, where, message = _error("a: 1\nb: 2\na: 3\n")
    assert (code, where) == (ErrorCode.E002, "f.yaml:3:1")
    assert "duplicate key 'a'" in message and "line 1" in message


def test_syntax_error_has_the_mark() -> None:
    code, where, message = _error("a: [1, 2\nb: 3\n")
    assert code is ErrorCode.E002
    assert where.startswith("f.yaml:2:")
    assert "invalid YAML" in message


def test_tab_indentation_is_a_syntax_error() -> None:
    code, where, _ = _error("a:\n\tb: 1\n")
    assert code is ErrorCode.E002 and where.startswith("f.yaml:2:")


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['true']\n",
        "a: !!python/name:os.system x\n",
        "a: !!python/object:builtins.dict {}\n",
        "a: !custom 1\n",
        "a: !!set {x, y}\n",
    ],
)
def test_foreign_tags_are_rejected(text: str) -> None:
    code, _, message = _error(text)
    assert code is ErrorCode.E002 and "unsupported tag" in message


def test_complex_keys_are_rejected() -> None:
    code, where, message = _error("? [a, b]\n: 1\n")
    assert (code, where) == (ErrorCode.E002, "f.yaml:1:3")
    assert "keys must be plain values" in message


def test_second_document_is_rejected() -> None:
    code, where, _ = _error("a: 1\n---\nb: 2\n")
    assert (code, where) == (ErrorCode.E002, "f.yaml:2:1")


def test_aliases_and_merge_keys_work() -> None:
    data, source = parse_yaml("base: &b {x: 1, y: 2}\nsvc:\n  <<: *b\n  y: 3\nref: *b\n", "f.yaml")
    assert data["svc"] == {"x": 1, "y": 3}
    assert data["ref"] == {"x": 1, "y": 2}
    assert source.position(("svc", "y")) == (4, 3)
    assert source.position(("svc", "x")) == (3, 3)  # merged keys point at the << key


def test_bad_merge_value() -> None:
    code, where, _ = _error("a: &a 1\nb:\n  <<: *a\n")
    assert (code, where) == (ErrorCode.E002, "f.yaml:3:3")


def test_unknown_and_recursive_aliases() -> None:
    assert _error("a: *nope\n")[:2] == (ErrorCode.E002, "f.yaml:1:4")
    assert "unfinished" in _error("a: &a [*a]\n")[2]


def test_billion_laughs_fails_fast() -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    started = time.perf_counter()
    code, _, message = _error("\n".join(lines) + "\n")
    assert code is ErrorCode.E002 and "expands to more than" in message
    assert time.perf_counter() - started < 1.0


def test_alias_count_is_bounded() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    code, _, message = _error(text)
    assert code is ErrorCode.E002 and "too many aliases" in message


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2000, 100_000])
def test_deep_nesting_is_an_error_not_recursion(depth: int) -> None:
    code, _, _ = _error("[" * depth + "]" * depth)
    assert code is ErrorCode.E002


def test_deep_block_nesting() -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "x: 1\n"
    code, _, message = _error(text)
    assert code is ErrorCode.E002 and "deeper than" in message


def test_nesting_at_the_bound_is_fine() -> None:
    data, _ = parse_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f.yaml")
    assert isinstance(data, list)


def test_control_characters_and_huge_ints() -> None:
    assert _error("a: \x00\n")[:2] == (ErrorCode.E002, "f.yaml:1:4")
    assert _error("a: " + "9" * 5000 + "\n")[:2] == (ErrorCode.E002, "f.yaml:1:4")


def test_surrogates_in_text_are_an_error() -> None:
    assert _error("a: '\ud800'\n")[0] is ErrorCode.E002


def test_scalars_keep_yaml_types() -> None:
    data, _ = parse_yaml("i: 8080\nf: 0.5\nb: true\nn: null\ns: '8080'\n", "f.yaml")
    assert data == {"i": 8080, "f": 0.5, "b": True, "n": None, "s": "8080"}

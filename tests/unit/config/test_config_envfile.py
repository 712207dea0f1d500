"""env_file parsing."""

from __future__ import annotations

from deploy_code.config.envfile import parse_env_file
from deploy_code.errors import ErrorCode


def test_forms() -> None:
    text = "\n".join(
        [
            "# comment",
            "",
            "A=1",
            "export B = two words  # comment",
            "C='single # kept $X'",
            'D="line\\nbreak \\"q\\""  # c',
            "E=",
            "A=override",
            "F=a#b",
        ]
    )
    values, diags = parse_env_file(text, ".env")
    assert diags == []
    assert values == {
        "A": "override",
        "B": "two words",
        "C": "single # kept $X",
        "D": 'line\nbreak "q"',
        "E": "",
        "F": "a#b",
    }


def test_malformed_lines_are_located() -> None:
    values, diags = parse_env_file('OK=1\nnot a pair\nX=\'open\nY="q" junk\n', "app.env")
    assert values == {"OK": "1"}
    assert [(d.code, str(d.location)) for d in diags] == [
        (ErrorCode.E002, "app.env:2:1"),
        (ErrorCode.E002, "app.env:3:1"),
        (ErrorCode.E002, "app.env:4:1"),
    ]

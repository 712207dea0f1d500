"""``env_file`` contents: ``KEY=VALUE`` lines, the common dotenv subset, taken literally.

Accepted per line: blank lines and ``# comments``; ``KEY=VALUE`` with an optional ``export`` prefix;
``'single quoted'`` values (literal), ``"double quoted"`` values (``\\n``, ``\\t``, ``\\"``, ``\\\\``
escapes), and unquoted values, where `` #`` starts a comment and surrounding blanks are dropped.
No ``${...}`` expansion and no multi-line values: what is written is what the process gets.
"""

from __future__ import annotations

import re

from deploy_code.errors import Diagnostic, ErrorCode, Location

__all__ = ["parse_env_file"]

_LINE_RE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _double_quoted(rest: str) -> tuple[str, str] | None:
    """Parse a double-quoted value at the start of ``rest``; returns ``(value, after)`` or None."""
    out: list[str] = []
    i = 1
    while i < len(rest):
        ch = rest[i]
        if ch == "\\" and i + 1 < len(rest):
            out.append(_ESCAPES.get(rest[i + 1], "\\" + rest[i + 1]))
            i += 2
        elif ch == '"':
            return "".join(out), rest[i + 1 :]
        else:
            out.append(ch)
            i += 1
    return None


def _value(raw: str) -> str | None:
    """The value of one line after ``=``, or None when it is malformed."""
    if raw.startswith("'"):
        end = raw.find("'", 1)
        if end < 0:
            return None
        value, after = raw[1:end], raw[end + 1 :]
    elif raw.startswith('"'):
        parsed = _double_quoted(raw)
        if parsed is None:
            return None
        value, after = parsed
    else:
        return re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    after = after.strip()
    return value if not after or after.startswith("#") else None


def parse_env_file(text: str, filename: str) -> tuple[dict[str, str], list[Diagnostic]]:
    """Parse an env file.

    Args:
        text: its contents.
        filename: shown in diagnostics.

    Returns:
        ``(variables, diagnostics)``: later lines win over earlier ones; one E002 diagnostic per
        malformed line, at that line.
    """
    values: dict[str, str] = {}
    diags: list[Diagnostic] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE_RE.match(stripped)
        value = None if match is None else _value(match.group(2))
        if match is None or value is None:
            diags.append(
                Diagnostic(
                    ErrorCode.E002,
                    f"{filename}: malformed line {stripped[:60]!r}",
                    Location(filename, number, 1),
                    "write KEY=VALUE; quote values that need spaces or '#'",
                )
            )
            continue
        values[match.group(1)] = value
    return values, diags

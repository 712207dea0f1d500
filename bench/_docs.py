"""Write a benchmark's results into its own section of docs/benchmarks.md.

Each script owns one ``## `` section (from its heading to the next ``## ``) and rewrites only that,
with a line saying where and when it was measured: core count, CPU model, Python, commit, date.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def commit() -> str:
    """The short hash of HEAD, with ``+dirty`` when the tree has changes; ``unknown`` outside git."""
    root = DOC.parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_line() -> str:
    """``Measured on 2 cores (AMD EPYC ...), Python 3.11.7, commit abc1234, 2026-11-29.``"""
    today = _dt.datetime.now(_dt.UTC).date().isoformat()
    return (
        f"Measured on {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"commit `{commit()}`, {today}."
    )


def write_section(heading: str, body: str, doc: Path = DOC) -> None:
    """Replace the section whose first line is ``heading`` (a ``## `` line) with ``heading`` + ``body``.

    The section runs to the next ``## `` heading or the end of the file; a missing section is
    appended at the end. Other sections are left byte for byte.
    """
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    new = [heading.rstrip("\n") + "\n", "\n", body.strip("\n") + "\n", "\n"]
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == heading.rstrip("\n"))
    except StopIteration:
        if lines and lines[-1].strip():
            lines.append("\n")
        doc.write_text("".join(lines + new).rstrip("\n") + "\n")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    doc.write_text("".join(lines[:start] + new + lines[end:]).rstrip("\n") + "\n")

"""The docs stay true: every error code is documented, the config example loads."""

from __future__ import annotations

import re
from pathlib import Path

from deploy_code.config import load_text
from deploy_code.errors import ErrorCode

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_errors_md_lists_every_code_with_its_title() -> None:
    text = (DOCS / "errors.md").read_text()
    rows = dict(re.findall(r"^\| ([ES]\d{3}) \| ([^|]+?) \|", text, flags=re.MULTILINE))
    assert rows == {str(code): code.summary for code in ErrorCode}


def test_config_md_example_loads(tmp_path: Path) -> None:
    text = (DOCS / "config.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert example is not None
    project = load_text(example.group(1), base_dir=tmp_path, environ={})
    assert list(project.spec.services) == ["kv", "api", "worker", "web"]
    assert project.spec.services["api"].replicas == 2
    assert project.spec.services["api"].depends_on == {"kv": "healthy"}

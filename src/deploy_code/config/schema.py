"""JSON Schema of the file format, for editors and ``deploy-code schema``.

Generated from :class:`ProjectSpec`, so it cannot drift from what :func:`load` accepts for single
fields; the cross-field rules of :mod:`.validate` cannot be expressed in it.
"""

from __future__ import annotations

from typing import Any

from deploy_code.config.model import ProjectSpec

__all__ = ["SCHEMA_DIALECT", "json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a deploy-code file; a fresh dict on every call."""
    schema = ProjectSpec.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    # Shorthands the models accept in a before-validator, which pydantic cannot see.
    service = defs.get("ServiceSpec", {}).get("properties", {})
    if "depends_on" in service:
        service["depends_on"] = {
            "anyOf": [service["depends_on"], {"type": "array", "items": {"type": "string"}}],
            "description": "service -> condition, or a list of services (condition: started)",
        }
    probe = defs.get("ProbeSpec", {}).get("properties", {})
    if "notify" in probe:
        probe["notify"] = {"anyOf": [probe["notify"], {"const": True}]}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://deploy-code.dev/schema/deploy-code.schema.json",
        "title": "deploy-code configuration",
        **{k: v for k, v in schema.items() if k != "title"},
    }

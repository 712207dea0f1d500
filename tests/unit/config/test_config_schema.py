"""JSON Schema export."""

from __future__ import annotations

import json

from deploy_code.config import json_schema


def test_schema_shape() -> None:
    schema = json_schema()
    json.dumps(schema)  # plain JSON
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    assert "services" in schema["properties"]
    assert schema["required"] == ["services"]
    assert schema["additionalProperties"] is False
    service = schema["$defs"]["ServiceSpec"]
    assert {"command", "ports", "depends_on", "health", "replicas"} <= set(service["properties"])


def test_schema_accepts_the_file_forms() -> None:
    defs = json_schema()["$defs"]
    start = defs["TimeoutsSpec"]["properties"]["start"]
    assert {"type": "string", "pattern": start["anyOf"][1]["pattern"]} in start["anyOf"]
    assert {"const": "auto"} in defs["TimeoutsSpec"]["properties"]["ready"]["anyOf"]
    depends = defs["ServiceSpec"]["properties"]["depends_on"]["anyOf"]
    assert {"type": "array", "items": {"type": "string"}} in depends


def test_schema_is_fresh_each_call() -> None:
    first = json_schema()
    first["properties"].clear()
    assert "services" in json_schema()["properties"]

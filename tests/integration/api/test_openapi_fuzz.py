"""schemathesis against the OpenAPI document the TCP listener serves: no 5xx, replies match it.

Each operation is fuzzed with a few valid and a few invalid examples (bounded: this runs in the normal
suite) as the admin,
so every route is reachable; ``POST /v1/down`` is left out (it would end the orchestrator). Two things
are pinned before a case is sent: ``follow`` is false (a stream never ends), and ``scale`` asks for at
most 3 replicas (a generated name could match a real service).

The operations are listed here rather than collected by ``schemathesis.pytest.from_fixture`` (its lazy
loader reads a pytest internal that pytest 9 no longer has); the first test checks the list against
the served document, so a new route cannot skip the fuzzing unnoticed.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from tests.integration.api.support import ApiDeployment

# Per operation and mode; DEPLOY_CODE_FUZZ_EXAMPLES=500 for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("DEPLOY_CODE_FUZZ_EXAMPLES", "15"))
LEFT_OUT = {"POST /v1/down", "POST /v1/apply", "POST /v1/rollback"}  # they change what runs
OPERATIONS = [
    "GET /v1/health",
    "GET /v1/health/report",
    "GET /v1/top",
    "GET /v1/history",
    "GET /v1/status",
    "GET /v1/outcome",
    "GET /v1/services",
    "GET /v1/services/{name}",
    "GET /v1/logs/{service}",
    "GET /v1/events",
    "GET /v1/deployments",
    "GET /metrics",
    "POST /v1/restart",
    "POST /v1/stop",
    "POST /v1/scale",
]


@pytest.fixture(scope="module")
def served_schema(api: ApiDeployment) -> Any:
    """The document as served (the viewer role may read it)."""
    return schemathesis.openapi.from_url(f"{api.url}/openapi.json", headers=api.headers("viewer"))


def test_every_served_operation_is_fuzzed(served_schema: Any) -> None:
    served = {op.ok().label for op in served_schema.get_all_operations()}
    assert served == set(OPERATIONS) | LEFT_OUT


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("label", OPERATIONS)
def test_served_openapi(served_schema: Any, api: ApiDeployment, label: str, mode: GenerationMode) -> None:
    operation = served_schema.find_operation_by_label(label)
    assert operation is not None
    auth = api.headers("admin")

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case: Any) -> None:
        if case.query and "follow" in case.query:
            case.query["follow"] = "false"
        if isinstance(case.body, dict) and isinstance(case.body.get("replicas"), int):
            case.body["replicas"] = min(case.body["replicas"], 3)
        response = case.call(headers=auth, timeout=30)
        unsupported = _unsupported(response)
        assert response.status_code < 500 or unsupported, response.text
        # A documented 501 is still checked against the document, just not counted as a crash.
        excluded = [schemathesis.checks.not_a_server_error] if unsupported else []
        if mode is GenerationMode.NEGATIVE:
            # Negative cases may only break what HTTP servers tolerate (an unknown query parameter)
            # or drop the Authorization header we put back: no 5xx and a documented reply still hold.
            excluded.append(schemathesis.checks.negative_data_rejection)
        case.validate_response(response, headers=auth, excluded_checks=excluded)

    fuzz()


def _unsupported(response: Any) -> bool:
    """501 S008 is a documented reply (``/metrics`` while the orchestrator renders no metrics)."""
    return bool(response.status_code == 501 and response.json().get("code") == "S008")

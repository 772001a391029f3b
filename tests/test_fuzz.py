"""Fuzz: schemathesis generates requests from the OpenAPI document the running router serves at /v1/openapi.json
and sends them over real HTTP to that router (in-process, on a free port), backed by the test's emulator project,
with the owner key of an entitled account. No answer may be a 5xx, and every answer must conform to the document:
its status code is documented, its content type is the documented one, its body (and documented headers) match the
documented schema; and a request that violates the document is refused with a 4xx.

Bounded so the whole file stays within a minute or two in CI: FUZZ_EXAMPLES per operation (QORCH_FUZZ_EXAMPLES to
change it), derandomized, no shrinking, no example database."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import billing_support

FUZZ_EXAMPLES = int(os.environ.get("QORCH_FUZZ_EXAMPLES", "50"))
billing_env = billing_support.billing_env  # Stripe's API is the tests' local server


@pytest.fixture
def api_schema(live, api, tenant, billing_env, s3):
    """The served document, aimed at the live router with the owner's key. Path ids are real (a workflow, its first
    hand-off, an artifact declared on it), so requests reach the services rather than stopping at 404."""
    workflow = api.create(tenant, labels={"team": "fuzz"})
    handoff = api.get(f"/v1/workflows/{workflow['id']}/handoffs", tenant.owner).body["handoffs"][0]
    data = b"fuzz"
    artifact = api.post(f"/v1/workflows/{workflow['id']}/artifacts",
                        {"name": "plan.md", "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
                        tenant.owner)
    assert artifact.status == 201, artifact.body
    loaded = schemathesis.openapi.from_url(f"{live.url}/v1/openapi.json", timeout=10)
    loaded.config.update(
        base_url=live.url, headers={"Authorization": f"Bearer {tenant.owner}"}, request_timeout=30,
        parameters={"workflow_id": workflow["id"], "handoff_id": handoff["id"],
                    "artifact_id": artifact.body["artifact"]["id"]})
    loaded.config.generation.update(max_examples=FUZZ_EXAMPLES, no_shrink=True, deterministic=True,
                                    database="none")
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


def not_a_server_error(ctx, response, case):
    """Stricter than schemathesis' own check, which lets a documented 5xx (503) through: here, none at all."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"


@schema.parametrize()
def test_the_api_conforms_to_its_openapi_document(case):
    # Two adjustments, to valid parts of a request only (a negative case must stay exactly as generated):
    def valid(where: ParameterLocation) -> bool:
        return case.meta is None or not case.meta.is_negative_at(where)

    headers = case.headers or {}
    if "Idempotency-Key" in headers and valid(ParameterLocation.HEADER):
        # Generated keys repeat across cases, and a key reused with another body is (rightly) 422: a fresh key
        # lets the valid requests reach the service. Key reuse is the functional tests' business.
        headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4().hex}"
    if isinstance(case.body, dict) and case.body.get("wait_seconds") and valid(ParameterLocation.BODY):
        case.body["wait_seconds"] = 0  # a claim's long poll would only wait out its seconds on an empty queue
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance, response_headers_conformance,
                                   negative_data_rejection])


# ---- what the fuzzer found --------------------------------------------------------------------------------------


@pytest.mark.parametrize("served_by", ["router", "function"])
def test_a_path_flask_cannot_route_is_a_problem_json_404(app, served_by):
    """functions-framework's catch-all `<path:path>` does not match a newline, so Flask itself answered such paths
    with its HTML 404 page, an undocumented content type. Both the local router and a function deployed from
    main.py (created the way the Cloud Functions runtime creates it) now answer problem+json."""
    import functions_framework

    main_py = str(Path(__file__).resolve().parent.parent / "main.py")
    served = app if served_by == "router" else functions_framework.create_app(
        target="get_workflow", source=main_py, signature_type="http")
    r = served.test_client().get("/v1/workflows/a%0Ab")
    assert (r.status_code, r.mimetype) == (404, "application/problem+json")
    assert r.get_json()["code"] == "not_found"

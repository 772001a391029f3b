"""Generated documents must match what is committed, and the served OpenAPI document must be the same one."""

from __future__ import annotations

import json

from tools import gendocs


def test_committed_docs_are_up_to_date():
    for path, text in gendocs.generated().items():
        assert path.exists(), f"{path} missing: run make docs"
        assert path.read_text() == text, f"{path.name} is stale: run make docs"


def test_openapi_is_served_and_names_every_route(api):
    from shared.http.routes import ROUTES

    r = api.get("/v1/openapi.json")
    assert r.status == 200 and r.body["openapi"].startswith("3.1")
    assert r.body == json.loads(gendocs.generated()[gendocs.DOCS / "openapi.json"])
    operations = {(path, method.upper()): op["operationId"] for path, ops in r.body["paths"].items()
                  for method, op in ops.items()}
    assert operations == {(route.path, route.method): route.function for route in ROUTES}


def test_openapi_schemas_match_the_models():
    from shared.domain.models import CreateWorkflowRequest, TransitionRequest
    from shared.http.openapi import document

    schemas = document()["components"]["schemas"]
    assert set(schemas["CreateWorkflowRequest"]["properties"]) == set(CreateWorkflowRequest.model_fields)
    assert set(schemas["TransitionRequest"]["properties"]) == set(TransitionRequest.model_fields)
    assert schemas["CreateWorkflowRequest"]["additionalProperties"] is False

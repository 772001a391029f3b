"""The OpenAPI 3.1 document, generated from the route table and the pydantic models (nothing restates them).
`docs/openapi.json` is this output, committed; a test keeps the two equal."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.domain import state_machine as state_machine_table
from shared.domain.models import Problem
from shared.http.routes import ROUTES, Route

_REF = "#/components/schemas/{model}"
_ERRORS = {
    400: "malformed_json: the body is not JSON; invalid_signature: the Stripe-Signature header does not verify",
    401: "unauthenticated: missing, malformed, unknown or revoked API key, or a Firebase ID token that fails "
         "verification (all look the same)",
    402: "payment_required: the account has no active subscription",
    403: "forbidden: the caller's roles may not do that (a VIEWER changes nothing), or a person is not a member of "
         "the account (X-Qorch-Account), or an API key called a person-only endpoint; quota_exceeded: the plan's "
         "limit is reached; email_not_verified: a person's email is not verified",
    404: "not_found: no such resource in the caller's account",
    405: "method_not_allowed",
    409: "invalid_transition, retry_limit_exceeded, version_conflict (also: the resource changed too fast, retry), "
         "no_billing_account or already_subscribed; lease_held (another agent holds the hand-off), lease_lost (you "
         "no longer hold it), upload_incomplete; budget_exhausted (the workflow's budget is spent: only its owner "
         "may move it); already_member; last_owner (the account's last owner cannot be removed or demoted)",
    413: "payload_too_large: bodies are limited to 256 KiB, artifacts to the plan's max_artifact_bytes",
    422: "validation_error (each bad field listed, a malformed or refused Idempotency-Key too; "
         "header:X-Qorch-Account when a person in several accounts did not say which), idempotency_key_reused, or "
         "checksum_mismatch (artifacts)",
    502: "billing_provider_error: Stripe refused the request",
    503: "unavailable: the store (or Stripe) cannot be reached; retry after Retry-After seconds; "
         "billing_not_configured",
}


ACCOUNT_HEADER = {
    "name": "X-Qorch-Account", "in": "header", "required": False,
    "description": "A person in several accounts: the account this call acts in (GET /v1/me lists them); without "
                   "it, their only account. Ignored for API keys, which belong to one account.",
    "schema": {"type": "string"},
}


def _error_codes(route: Route) -> list[int]:
    codes = {405, *route.errors}
    if route.authenticated:
        codes |= {401, 403, 503}
        if not route.person_only:
            codes.add(422)  # a person in several accounts who did not say which
    if route.params:
        codes.add(404)
    if route.query:
        codes.add(422)
    if route.body:
        codes |= {400, 413, 422}
    if route.writes:  # a malformed or reused Idempotency-Key, or one sent where it is refused
        codes.add(422)
    return sorted(codes)


def _query_parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if route.query is None:
        return []
    schema = route.query.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop,
         **({"description": prop["description"]} if "description" in prop else {})}
        for name, prop in schema["properties"].items()
    ]


def _operation(route: Route, refs: dict[tuple[type, str], Any], schemas: dict[str, Any]) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": refs[(Problem, "serialization")]}}
    success_schema = refs[(route.response, "serialization")] if route.response else {"type": "object"}
    responses: dict[str, Any] = {
        str(route.status): {"description": "OK" if route.status == 200 else "Created",
                            "content": {"application/json": {"schema": success_schema}}},
    } if route.status != 204 else {"204": {"description": "Done (no content)"}}
    if route.no_content:
        responses["204"] = {"description": route.no_content}
    for code in _error_codes(route):
        responses[str(code)] = {"description": _ERRORS[code], "content": problem}
    parameters = [
        {"name": p, "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}}
        for p in route.params
    ] + _query_parameters(route, schemas)
    if route.authenticated and not route.person_only:
        parameters.append(ACCOUNT_HEADER)
    if route.writes and route.idempotency_key_refused is None:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "description": "Repeat a request safely for 24 h: same key and body → the first response.",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                                      "pattern": "^[\\x20-\\x7E]+$"}})
    op: dict[str, Any] = {"operationId": route.function, "summary": route.summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": refs[(route.body, "validation")]}}}
    if not route.authenticated:
        op["security"] = []
    elif route.person_only:
        op["security"] = [{"firebaseIdToken": []}]
    else:
        op["security"] = [{"apiKey": []}, {"firebaseIdToken": []}]
    return op


def state_machine() -> dict[str, Any]:
    """The state machine table and its Mermaid diagram, as `GET /v1/state-machine` publishes it."""
    return state_machine_table.describe()


@cache
def document() -> dict[str, Any]:
    pairs = {(Problem, "serialization")}
    for route in ROUTES:
        if route.body:
            pairs.add((route.body, "validation"))
        if route.response:
            pairs.add((route.response, "serialization"))
    refs, defs = models_json_schema(sorted(pairs, key=lambda p: (p[0].__name__, p[1])), ref_template=_REF)
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qorch API",
            "version": "1.0.0",
            "description": "Q Assistant Orchestration: AI software-build workflows through "
                           f"{len(state_machine_table.STATES)} states. Errors are application/problem+json with a "
                           "stable `code`.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "An API key qo_<env>_<secret> (a program): POST /v1/keys or the admin "
                                          "command"},
                "firebaseIdToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                    "description": "A person: their Firebase Authentication ID token"},
            },
        },
    }

"""CORS: every /v1 route answers its preflight from the function that serves it (and through the local router, and
behind the gateway from cors_preflight), allowed origins get the CORS headers on every answer (errors included),
any other origin gets the same answer without them, and a request without Origin is exactly as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import functions_framework
import pytest

from shared.http import cors
from shared.http.routes import ROUTES
from shared.runtime.config import config, parse_origins

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "main.py")
ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
CORS_HEADERS = {"access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
                "access-control-max-age", "access-control-expose-headers", "vary"}
PATHS = sorted({r.path for r in ROUTES})


def concrete(path: str) -> str:
    return (path.replace("{workflow_id}", "wf_1").replace("{handoff_id}", "ho_1").replace("{artifact_id}", "art_1")
            .replace("{key_id}", "key_1").replace("{member_id}", "mem_1"))


def preflight_headers(origin: str | None, method: str = "POST") -> dict[str, str]:
    headers = {"Access-Control-Request-Method": method,
               "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}
    return {**headers, "Origin": origin} if origin else headers


def lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in dict(headers).items() if k.lower() not in ("date", "content-length")}


@pytest.fixture
def origins(monkeypatch):
    monkeypatch.setenv("QORCH_CORS_ORIGINS", f"{ALLOWED}, http://localhost:5173")
    config.cache_clear()
    yield
    config.cache_clear()


@pytest.fixture(scope="module")
def function_apps():
    """Each route's function, loaded the way the Cloud Functions runtime loads it (source main.py, one target)."""
    return {name: functions_framework.create_app(target=name, source=MAIN, signature_type="http")
            for name in {r.function for r in ROUTES} | {"cors_preflight"}}


def assert_preflight_for(r, path: str) -> None:
    methods = cors.methods_for(concrete(path))
    assert r.status_code == 204 and r.data == b"", (r.status_code, r.data[:200])
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in r.headers.get("Vary", "")
    assert [m.strip() for m in r.headers["Access-Control-Allow-Methods"].split(",")] == methods
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "x-qorch-account"} <= allowed
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    assert r.headers["Allow"] == ", ".join([*methods, "OPTIONS"])


# ---- preflights --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.function)
def test_every_route_answers_its_preflight_from_its_own_function(route, origins, function_apps, store):
    r = function_apps[route.function].test_client().open(concrete(route.path), method="OPTIONS",
                                                         headers=preflight_headers(ALLOWED, route.method))
    assert_preflight_for(r, route.path)
    assert route.method in r.headers["Access-Control-Allow-Methods"]
    assert store.rpcs.total() == 0, "a preflight reads nothing: no auth, no store"


@pytest.mark.parametrize("path", PATHS)
def test_every_path_answers_its_preflight_through_the_local_router(path, origins, app, store):
    r = app.test_client().open(concrete(path), method="OPTIONS", headers=preflight_headers(ALLOWED))
    assert_preflight_for(r, path)
    # a GET and POST path (e.g. /v1/workflows) lists both: one preflight serves both methods
    assert r.headers["Access-Control-Allow-Methods"] == ", ".join(sorted({x.method for x in ROUTES
                                                                            if x.path == path}))


@pytest.mark.parametrize("path", PATHS)
def test_the_gateways_cors_preflight_function_answers_for_every_path(path, origins, function_apps, store):
    """Behind API Gateway every `options` operation goes to cors_preflight, which answers for any /v1 path."""
    r = function_apps["cors_preflight"].test_client().open(concrete(path), method="OPTIONS",
                                                           headers=preflight_headers(ALLOWED))
    assert_preflight_for(r, path)


def test_cors_preflight_refuses_what_is_not_a_preflight_of_a_known_path(origins, function_apps):
    client = function_apps["cors_preflight"].test_client()
    unknown = client.open("/v1/nothing-here", method="OPTIONS", headers=preflight_headers(ALLOWED))
    assert (unknown.status_code, unknown.mimetype, unknown.get_json()["code"]) == (
        404, "application/problem+json", "not_found")
    assert unknown.headers["Access-Control-Allow-Origin"] == ALLOWED  # errors carry CORS headers too
    get = client.get("/v1/workflows", headers={"Origin": ALLOWED})
    assert (get.status_code, get.get_json()["code"], get.headers["Allow"]) == (405, "method_not_allowed", "OPTIONS")


@pytest.mark.parametrize("origin", [OTHER, None, "https://app.example.com.evil.net", "null"])
def test_an_origin_not_on_the_list_gets_the_same_preflight_answer_without_cors_headers(origin, origins, app,
                                                                                     function_apps, store):
    for served in (app, function_apps["cors_preflight"], function_apps["create_workflow"]):
        allowed = served.test_client().open("/v1/workflows", method="OPTIONS", headers=preflight_headers(ALLOWED))
        other = served.test_client().open("/v1/workflows", method="OPTIONS", headers=preflight_headers(origin))
        assert other.status_code == allowed.status_code == 204
        assert not {k.lower() for k in other.headers.keys()} & (CORS_HEADERS - {"vary"}), dict(other.headers)
        assert "Vary" not in other.headers
        assert {k: v for k, v in lower(allowed.headers).items() if k not in CORS_HEADERS} == lower(other.headers)


def test_a_preflight_for_an_unknown_path_is_a_404_problem(origins, app):
    r = app.test_client().open("/v1/nope", method="OPTIONS", headers=preflight_headers(ALLOWED))
    assert (r.status_code, r.mimetype) == (404, "application/problem+json")
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED


# ---- real requests -----------------------------------------------------------------------------------------------


def test_responses_to_an_allowed_origin_carry_the_cors_headers(origins, api, tenant):
    created = api.post("/v1/workflows", {"title": "Shop"}, tenant.owner,
                       headers={"Origin": ALLOWED, "Idempotency-Key": "cors-1"})
    assert created.status == 201
    assert created.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in created.headers["Vary"]
    exposed = {h.strip() for h in created.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate"} <= exposed
    replay = api.post("/v1/workflows", {"title": "Shop"}, tenant.owner,
                      headers={"Origin": ALLOWED, "Idempotency-Key": "cors-1"})
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.headers["Access-Control-Allow-Origin"]


@pytest.mark.parametrize("case", ["unauthenticated", "not_found", "validation_error", "method_not_allowed",
                                  "unknown_path"])
def test_problem_responses_carry_cors_headers_for_allowed_origins_only(case, origins, api, tenant):
    requests = {
        "unauthenticated": ("GET", "/v1/workflows", None, None),
        "not_found": ("GET", "/v1/workflows/wf_missing", tenant.owner, None),
        "validation_error": ("POST", "/v1/workflows", tenant.owner, {"title": ""}),
        "method_not_allowed": ("DELETE", "/v1/workflows", tenant.owner, None),
        "unknown_path": ("GET", "/v1/nothing", tenant.owner, None),
    }
    method, path, key, body = requests[case]
    answers = {origin: api.request(method, path, key=key, body=body, headers={"Origin": origin} if origin else {})
               for origin in (ALLOWED, OTHER, None)}
    allowed, other, none = answers[ALLOWED], answers[OTHER], answers[None]
    assert allowed.status == other.status == none.status >= 400 and allowed.code == other.code
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED and "Origin" in allowed.headers["Vary"]
    assert not {k.lower() for k in other.headers.keys()} & CORS_HEADERS
    assert {k: v for k, v in lower(allowed.headers).items() if k not in CORS_HEADERS} == lower(other.headers)
    assert lower(other.headers) == lower(none.headers)
    if case == "unauthenticated":
        assert "WWW-Authenticate" in allowed.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("route", [r for r in ROUTES if r.method == "GET"], ids=lambda r: r.function)
def test_requests_without_origin_are_answered_exactly_as_without_an_allow_list(route, api, tenant, monkeypatch):
    """The allow-list changes nothing for a request without Origin (server-to-server clients, agents, curl)."""
    path = concrete(route.path)
    config.cache_clear()
    before = api.get(path, tenant.owner)
    monkeypatch.setenv("QORCH_CORS_ORIGINS", ALLOWED)
    config.cache_clear()
    after = api.get(path, tenant.owner)
    config.cache_clear()
    assert (before.status, lower(before.headers)) == (after.status, lower(after.headers))
    assert not {k.lower() for k in after.headers} & CORS_HEADERS


def test_without_an_allow_list_no_origin_gets_cors_headers(api, tenant):
    config.cache_clear()
    r = api.request("OPTIONS", "/v1/workflows", headers=preflight_headers(ALLOWED))
    assert r.status == 204 and not {k.lower() for k in r.headers} & CORS_HEADERS
    assert api.get("/v1/workflows", tenant.owner, headers={"Origin": ALLOWED}).headers.get(
        "Access-Control-Allow-Origin") is None


# ---- the allow-list ----------------------------------------------------------------------------------------------


def test_the_allow_list_holds_exact_normalised_origins():
    assert parse_origins("") == ()
    assert parse_origins(" https://App.Example.com:443 , http://localhost:5173,,https://app.example.com") == (
        "https://app.example.com", "http://localhost:5173")
    assert parse_origins("http://[::1]:8080") == ("http://[::1]:8080",)


@pytest.mark.parametrize("bad", ["*", "https://app.example.com/", "https://app.example.com/path", "app.example.com",
                                 "ftp://files.example.com", "https://*.example.com", "https://u@app.example.com",
                                 "https://app.example.com:99999"])
def test_an_entry_that_is_not_an_origin_is_refused_naming_the_variable(bad, monkeypatch):
    from shared.runtime.config import ConfigError

    with pytest.raises(ValueError, match="not an origin"):
        parse_origins(f"https://ok.example.com,{bad}")
    monkeypatch.setenv("QORCH_CORS_ORIGINS", f"https://ok.example.com,{bad}")
    config.cache_clear()
    try:
        with pytest.raises(ConfigError, match="QORCH_CORS_ORIGINS"):  # the instance does not start
            config()
    finally:
        monkeypatch.delenv("QORCH_CORS_ORIGINS")
        config.cache_clear()


def test_make_run_allows_its_own_dashboard_origin(monkeypatch):
    from tools.run import allow_dashboard_origin

    monkeypatch.setenv("QORCH_CORS_ORIGINS", "https://app.example.com")
    value = allow_dashboard_origin(8123)
    assert parse_origins(value) == ("https://app.example.com", "http://127.0.0.1:8123", "http://localhost:8123")
    monkeypatch.delenv("QORCH_CORS_ORIGINS")
    assert parse_origins(allow_dashboard_origin(8080)) == ("http://127.0.0.1:8080", "http://localhost:8080")


# ---- cold start --------------------------------------------------------------------------------------------------


def test_cors_preflight_starts_without_the_store_client():
    """A browser waits for the preflight before every first request: its function loads no Firestore client."""
    probe = ("import importlib, json, sys; importlib.import_module('functions.cors_preflight'); "
             "print(json.dumps(sorted(m for m in ('google.cloud.firestore', 'stripe', 'boto3') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QORCH_CORS_ORIGINS": ALLOWED})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_literal_segment_beats_a_parameter(origins, app, store):
    """/v1/members/accept also fits /v1/members/{member_id}: like API Gateway, the literal path alone serves it."""
    assert cors.methods_for("/v1/members/accept") == ["POST"]
    assert cors.methods_for("/v1/members/mem_1") == ["DELETE", "PATCH"]
    r = app.test_client().patch("/v1/members/accept", json={"roles": ["VIEWER"]})
    assert r.status_code == 405 and r.headers["Allow"] == "POST", (r.status_code, r.data[:200])
    assert store.rpcs == {}

"""The checks that keep deployment true: the committed deployment files are what the generator makes from the code's
tables; every function in serverless.yml is an entry point of main.py with the signature its trigger calls, and
every entry point is deployed; every /v1 operation of the OpenAPI document maps to exactly one deployed HTTP
function, through the API Gateway config; secrets go only where they are read; the scripts parse."""

from __future__ import annotations

import base64
import inspect
import json
import re
import subprocess
from pathlib import Path

import functions_framework
import pytest
import yaml
from functions_framework import _function_registry

import main
from shared.http import openapi
from shared.http.event_functions import EVENT_FUNCTIONS
from shared.http.routes import ROUTES
from tools import gendeploy

ROOT = Path(__file__).resolve().parent.parent
SERVERLESS = yaml.safe_load((ROOT / "serverless.yml").read_text())
GATEWAY = yaml.safe_load((ROOT / "infra" / "api-gateway.yaml").read_text())
TRIGGER_SIGNATURE = {"http": "http", "event": "cloudevent"}


def _trigger(spec: dict) -> str:
    (event,) = spec["events"]
    (kind,) = event
    return kind


def test_committed_deployment_files_are_the_generators_output():
    stale = [str(p.relative_to(ROOT)) for p, text in gendeploy.outputs().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"out of date, run `make deploy-files`: {stale}"


def test_every_serverless_function_is_a_main_entry_point_with_its_triggers_signature():
    functions = SERVERLESS["functions"]
    assert functions
    for name, spec in functions.items():
        assert spec["handler"] == name
        entry = getattr(main, name, None)
        assert callable(entry), f"serverless.yml deploys {name}, main.py has no such entry point"
        kind = _trigger(spec)
        assert _function_registry.REGISTRY_MAP.get(name) == TRIGGER_SIGNATURE[kind], (name, kind)
        params = list(inspect.signature(entry).parameters.values())
        assert len(params) == 1 and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, name
        assert (ROOT / "functions" / f"{name}.py").is_file()
        if kind == "event":
            assert spec["events"][0]["event"]["eventType"] == "google.cloud.pubsub.topic.v1.messagePublished"
        assert SERVERLESS["provider"]["runtime"] == "python312" and "runtime" not in spec
        assert spec["memorySize"] and spec["timeout"].endswith("s")


def test_every_main_entry_point_is_deployed():
    registered = {name for name, kind in _function_registry.REGISTRY_MAP.items()
                  if getattr(main, name, None) is not None and kind in ("http", "cloudevent")}
    assert set(main.HTTP_FUNCTIONS) | set(main.CLOUD_EVENT_FUNCTIONS) == registered
    assert registered == set(SERVERLESS["functions"])
    assert {f.function for f in EVENT_FUNCTIONS} == {n for n, s in SERVERLESS["functions"].items()
                                                     if _trigger(s) == "event"}


def test_every_v1_operation_maps_to_one_deployed_http_function_through_the_gateway():
    http = {n for n, s in SERVERLESS["functions"].items() if _trigger(s) == "http"} - {gendeploy.PREFLIGHT_FUNCTION}
    operations = [(path, method, op["operationId"]) for path, ops in openapi.document()["paths"].items()
                  for method, op in ops.items()]
    assert all(path.startswith("/v1/") for path, _, _ in operations)
    assert sorted(f for _, _, f in operations) == sorted(http), "each HTTP function serves exactly one operation"
    gateway = {(path, method): op for path, ops in GATEWAY["paths"].items() for method, op in ops.items()
               if method != "options"}
    assert set(gateway) == {(p, m) for p, m, _ in operations}
    for path, method, function in operations:
        op = gateway[(path, method)]
        backend = op["x-google-backend"]
        assert op["operationId"] == function
        # the function's Cloud Run URL (deploy.sh fills it in), which is also the audience Cloud Run accepts
        assert backend["address"] == backend["jwt_audience"] == f"@URL:{function}@"
        assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS"
        # the function still recognises its path behind the gateway (it may see its own name first)
        concrete = re.sub(r"\{(\w+)\}", r"\1_1", path)
        route = next(r for r in ROUTES if r.function == function)
        assert route.match(concrete) is not None and route.match(f"/{function}{concrete}") is not None
        assert {p["name"] for p in op.get("parameters", [])} == set(route.params)


def test_every_v1_path_has_its_options_operation_routed_to_cors_preflight():
    """Browsers preflight cross-origin calls; without an `options` operation the gateway answers 405 itself."""
    paths = {r.path for r in ROUTES}
    assert set(GATEWAY["paths"]) == paths
    operation_ids = [op["operationId"] for ops in GATEWAY["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds are unique in an API config"
    for path in paths:
        options = GATEWAY["paths"][path]["options"]
        backend = options["x-google-backend"]
        assert backend["address"] == backend["jwt_audience"] == "@URL:cors_preflight@"
        assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS"
        assert {p["name"] for p in options.get("parameters", [])} == set(re.findall(r"\{(\w+)\}", path))
        methods = sorted(m.upper() for m in GATEWAY["paths"][path] if m != "options")
        assert options["summary"] == f"CORS preflight ({', '.join(methods)})"
    assert SERVERLESS["functions"]["cors_preflight"]["events"] == [{"http": True}]
    assert not SERVERLESS["functions"]["cors_preflight"].get("secrets")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.function)
def test_each_http_entry_point_serves_its_route_through_functions_framework(route, store):
    """Loaded the way the runtime loads it (source main.py, target = the function): an unauthenticated call gets
    the product's own answer (200 for public routes, else a problem), not a framework error."""
    app = functions_framework.create_app(target=route.function, source=str(ROOT / "main.py"),
                                         signature_type="http")
    path = re.sub(r"\{(\w+)\}", r"\1_1", route.path)
    r = app.test_client().open(path, method=route.method, headers={"Content-Type": "application/json"},
                               data=b"" if route.method == "GET" else b"{}")
    if route.authenticated:
        assert r.status_code == 401 and r.mimetype == "application/problem+json", (r.status_code, r.data[:200])
    else:
        assert r.mimetype in ("application/json", "application/problem+json"), (r.status_code, r.data[:200])
        assert r.status_code < 400 or r.get_json()["code"] != "internal", r.data[:200]


def test_the_cleanup_entry_point_runs_on_a_pubsub_cloudevent(store, capsys):
    app = functions_framework.create_app(target="cleanup", source=str(ROOT / "main.py"),
                                         signature_type="cloudevent")
    message = {"message": {"data": base64.b64encode(b'{"tasks": ["records"]}').decode(), "messageId": "1"},
               "subscription": "projects/p/subscriptions/s"}
    r = app.test_client().post("/", json=message, headers={
        "ce-id": "1", "ce-source": "//pubsub.googleapis.com/projects/p/topics/qorch-cleanup",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished", "ce-specversion": "1.0"})
    assert r.status_code == 200, r.data
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x.get("function") == "cleanup"]
    assert line["severity"] == "INFO" and set(line["tasks"]) == {"records"} and line["left_for_next_run"] == []


def test_a_malformed_trigger_message_is_refused_and_logged(store, capsys):
    from functions.cleanup import cleanup

    cleanup({"message": {"data": base64.b64encode(b'{"tasks": ["everything"]}').decode()}})
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert line["severity"] == "ERROR" and "refused" in line["message"]
    assert store.rpcs.total() == 0


def test_secrets_go_only_to_the_functions_that_read_them():
    functions = SERVERLESS["functions"]
    for name, spec in functions.items():
        modules = gendeploy.imports_of(f"functions.{name}")
        secrets = set(spec.get("secrets", {}))
        assert secrets <= set(gendeploy.SECRETS), name
        assert ({"QORCH_S3_ACCESS_KEY_ID", "QORCH_S3_SECRET_ACCESS_KEY"} <= secrets) == (
            gendeploy.S3_MODULE in modules), name
        if gendeploy.STRIPE_MODULE not in modules:
            assert not secrets & {"STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"}, name
        for env, ref in spec.get("secrets", {}).items():
            assert ref == {"secret": gendeploy.SECRETS[env], "version": "latest"}


def _plan() -> str:
    return (ROOT / "infra" / "deploy-plan.sh").read_text()


def test_each_function_runs_as_the_identity_of_exactly_the_secrets_it_reads():
    """Issue 9: the billing functions run as accounts that may read the Stripe secrets they use; every other
    function runs as an account that may read no Stripe secret (and no secret it does not read)."""
    plan = _plan()
    readers = {m.group(1): set(m.group(3).split()) for m in re.finditer(
        r"^  ensure_secret (\S+) (\S+) ?(.*)$", plan, re.M)}
    assert set(readers) == set(gendeploy.SECRETS.values())
    deployed_as = {m.group(1): m.group(2) for m in re.finditer(
        r"^      deploy_function (\S+) \S+ (\S+) ", plan, re.M)}
    assert set(deployed_as) == set(SERVERLESS["functions"])
    for name, spec in SERVERLESS["functions"].items():
        account = deployed_as[name]
        assert spec["serviceAccountEmail"] == f"{account}@${{env:PROJECT}}.iam.gserviceaccount.com"
        may_read = {secret for secret, accounts in readers.items() if account in accounts}
        assert may_read == {ref["secret"] for ref in spec.get("secrets", {}).values()}, name
    stripe = {gendeploy.SECRETS["STRIPE_API_KEY"], gendeploy.SECRETS["STRIPE_WEBHOOK_SECRET"]}
    billing = {n for n, spec in SERVERLESS["functions"].items()
               if {ref["secret"] for ref in spec.get("secrets", {}).values()} & stripe}
    assert billing == {"create_checkout_session", "create_portal_session", "stripe_webhook"}
    for name in set(SERVERLESS["functions"]) - billing:
        assert not any(deployed_as[name] in readers[s] for s in stripe), f"{name} could read a Stripe secret"
    accounts = re.search(r"^PLAN_RUNTIME_ACCOUNTS=\((.*)\)$", plan, re.M).group(1).split()
    assert set(deployed_as.values()) == set(accounts)


def test_a_new_combination_of_secrets_needs_a_declared_identity(monkeypatch):
    monkeypatch.setitem(gendeploy.STRIPE_SECRETS, "get_account", ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"))
    gendeploy.imports_of.cache_clear()
    with pytest.raises(SystemExit, match="IDENTITIES"):
        gendeploy.functions()


def test_the_deploy_scripts_parse_and_name_every_function():
    for script in ("infra/deploy.sh", "infra/deploy-plan.sh"):
        subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
    plan = (ROOT / "infra" / "deploy-plan.sh").read_text()
    listed = next(line for line in plan.splitlines() if line.startswith("PLAN_FUNCTIONS=("))
    assert set(listed[len("PLAN_FUNCTIONS=("):-1].split()) == set(SERVERLESS["functions"])


def test_the_gateway_callers_key_arrives_as_x_forwarded_authorization(api, tenant):
    """Behind API Gateway, Authorization holds the gateway's own token and the caller's header is forwarded."""
    r = api.get("/v1/workflows", headers={"Authorization": "Bearer eyJhbGciOi.gateway.token",
                                          "X-Forwarded-Authorization": f"Bearer {tenant.owner}"})
    assert r.status == 200, r.body
    assert api.get("/v1/workflows", headers={"Authorization": "Bearer eyJhbGciOi.gateway.token"}).status == 401

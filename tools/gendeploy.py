"""Generate the deployment files from the tables the code already has, so a new function cannot be forgotten:

    serverless.yml          every function: entry point, trigger, runtime, identity, memory, timeout, environment,
                            secrets
    infra/api-gateway.yaml  the public /v1 paths → functions (API Gateway config, OpenAPI 2.0, x-google-backend),
                            and every path's `options` operation → cors_preflight (CORS preflights)
    infra/deploy-plan.sh    what infra/deploy.sh creates: runtime identities, secrets and who may read them,
                            functions, indexes, field overrides with their TTL policies, topics and scheduler jobs
                            (bash function calls; deploy.sh holds the logic)

Sources: `shared.http.routes.ROUTES` (HTTP functions and paths),
`shared.http.event_functions.EVENT_FUNCTIONS` (scheduled CloudEvent functions), `infra/firestore.indexes.json`
(indexes, exemptions, TTL), `shared/domain/plans.json` (the price variables), and the per-function settings
below. `tests/test_deploy.py` checks the committed files equal this output, and checks the files themselves
against `main.py`.

    python -m tools.gendeploy           # rewrite the files
    python -m tools.gendeploy --check   # exit 1 if any committed file differs
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from shared.http.event_functions import EVENT_FUNCTIONS
from shared.http.routes import ROUTES

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = "python312"
PREFLIGHT_FUNCTION = "cors_preflight"  # API Gateway's backend for every `options` operation (main.py has it)
GATEWAY_ACCOUNT = "qorch-gateway"  # API Gateway's identity towards the functions (invoker on the HTTP ones)
TRIGGER_ACCOUNT = "qorch-trigger"  # Eventarc's identity towards the event functions (invoker on those)

# Secret Manager: the environment variable a function reads → the secret that holds it.
SECRETS: dict[str, str] = {
    "STRIPE_API_KEY": "qorch-stripe-api-key",
    "STRIPE_WEBHOOK_SECRET": "qorch-stripe-webhook-secret",
    "QORCH_S3_ACCESS_KEY_ID": "qorch-s3-access-key-id",
    "QORCH_S3_SECRET_ACCESS_KEY": "qorch-s3-secret-access-key",
}
S3_SECRETS = ("QORCH_S3_ACCESS_KEY_ID", "QORCH_S3_SECRET_ACCESS_KEY")

# Runtime identities. A function runs as the service account of exactly the secrets its code reads, and an account
# may read exactly its secrets (plus Firestore documents, which every function uses): so a function that reads no
# Stripe secret cannot read one, whatever its code does. A new combination of secrets must be declared here: the
# generator refuses to guess. (account, display name)
IDENTITIES: dict[frozenset[str], tuple[str, str]] = {
    frozenset(): ("qorch-functions", "qorch functions that read no secret (Firestore only)"),
    frozenset(S3_SECRETS): ("qorch-objects", "qorch artifact functions and cleanup (Firestore, object store keys)"),
    frozenset({"STRIPE_API_KEY"}): ("qorch-billing", "qorch checkout and portal (Firestore, Stripe API key)"),
    frozenset({"STRIPE_WEBHOOK_SECRET"}): ("qorch-webhook", "qorch Stripe webhook (Firestore, webhook secret)"),
}
# The adapter modules that read secrets: a function that (transitively) imports one gets its secrets, no other.
S3_MODULE = "shared.adapters.objectstore"
STRIPE_MODULE = "shared.adapters.stripe"
# Which Stripe secrets each function that imports the Stripe adapter uses (least privilege: the webhook verifies
# signatures, checkout and portal call the API, the account view only reads the store). A new function that
# imports it must be added here: the generator refuses to guess.
STRIPE_SECRETS: dict[str, tuple[str, ...]] = {
    "stripe_webhook": ("STRIPE_WEBHOOK_SECRET",),
    "create_checkout_session": ("STRIPE_API_KEY",),
    "create_portal_session": ("STRIPE_API_KEY",),
    "get_account": (),
}

# Plain (non-secret) configuration, the same for every function: deploy.sh passes each one set in its environment
# (an unset one keeps the code's default, named here for serverless.yml, which cannot leave a variable out).
ENVIRONMENT_FROM_DEPLOYER: dict[str, str] = {
    "QORCH_S3_BUCKET": "", "QORCH_S3_REGION": "us-east-1", "QORCH_S3_ENDPOINT_URL": "",
    "QORCH_S3_ADDRESSING_STYLE": "auto", "QORCH_CHECKOUT_SUCCESS_URL": "", "QORCH_CHECKOUT_CANCEL_URL": "",
    "QORCH_PORTAL_RETURN_URL": "", "QORCH_BILLING_GRACE_DAYS": "3", "QORCH_CORS_ORIGINS": "",
    # People: the Firebase project whose ID tokens are accepted ('' = GOOGLE_CLOUD_PROJECT), where its signing
    # certificates are published ('' = Google's), and how long an instance trusts a key or membership it read.
    "QORCH_FIREBASE_PROJECT": "", "QORCH_FIREBASE_CERTS_URL": "", "QORCH_KEY_CACHE_SECONDS": "5",
}


@dataclass(frozen=True)
class Settings:
    memory_mb: int = 512
    cpu: str = "1"
    timeout_s: int = 60
    concurrency: int = 40  # requests per instance (gen2; needs a whole CPU)
    min_instances: int = 0
    max_instances: int = 20


DEFAULT = Settings()
# Only what differs from DEFAULT, and why.
OVERRIDES: dict[str, Settings] = {
    # Long polls (wait_seconds up to 20) mostly wait: more of them per instance.
    "claim_handoff": replace(DEFAULT, concurrency=80, max_instances=40),
    # Reads the whole stored object to check its SHA-256 (up to the plan's max_artifact_bytes).
    "complete_artifact": replace(DEFAULT, timeout_s=300, concurrency=8),
    # One run at a time (budget 240 s): overlapping runs are safe, but there is no point in them.
    "cleanup": replace(DEFAULT, timeout_s=300, concurrency=1, max_instances=1),
    # Answers preflights from the route table alone: quick, many at once.
    PREFLIGHT_FUNCTION: replace(DEFAULT, timeout_s=10, concurrency=80),
}


# ---- what each function is ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Function:
    name: str
    trigger: str  # "http" or "topic"
    settings: Settings
    secrets: tuple[str, ...]  # environment variable names, each from SECRETS
    account: str = ""  # the runtime service account (name, without @project...), from IDENTITIES
    method: str | None = None
    path: str | None = None
    topic: str | None = None
    schedule: str | None = None


def _module_file(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def imports_of(module: str) -> frozenset[str]:
    """The project modules `module` imports, directly or not, at module level or inside functions."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen or (path := _module_file(current)) is None:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo.append(node.module)
                todo += [f"{node.module}.{alias.name}" for alias in node.names]
    return frozenset(m for m in seen if m != module)


def secrets_of(name: str) -> tuple[str, ...]:
    modules = imports_of(f"functions.{name}")
    found: list[str] = []
    if STRIPE_MODULE in modules:
        if name not in STRIPE_SECRETS:
            raise SystemExit(f"functions.{name} imports {STRIPE_MODULE}: declare the Stripe secrets it needs in "
                             "STRIPE_SECRETS (tools/gendeploy.py)")
        found += STRIPE_SECRETS[name]
    if S3_MODULE in modules:
        found += S3_SECRETS
    return tuple(found)


def identity_of(secrets: tuple[str, ...]) -> str:
    found = IDENTITIES.get(frozenset(secrets))
    if found is None:
        raise SystemExit(f"no runtime identity reads exactly {sorted(secrets)}: declare one in IDENTITIES "
                         "(tools/gendeploy.py)")
    return found[0]


def functions() -> list[Function]:
    out = [Function(r.function, "http", OVERRIDES.get(r.function, DEFAULT), secrets_of(r.function),
                    method=r.method, path=r.path) for r in ROUTES]
    out.append(Function(PREFLIGHT_FUNCTION, "http", OVERRIDES[PREFLIGHT_FUNCTION], secrets_of(PREFLIGHT_FUNCTION)))
    out += [Function(f.function, "topic", OVERRIDES.get(f.function, DEFAULT), secrets_of(f.function),
                     topic=f.topic, schedule=f.schedule) for f in EVENT_FUNCTIONS]
    return [replace(fn, account=identity_of(fn.secrets)) for fn in out]


def accounts_by_secret() -> dict[str, list[str]]:
    """Secret env var → the runtime accounts that may read it (those of the functions that read it)."""
    return {env: sorted({fn.account for fn in functions() if env in fn.secrets}) for env in SECRETS}


def price_variables() -> list[str]:
    data = json.loads((ROOT / "shared" / "domain" / "plans.json").read_text())
    return sorted(p["price_env"] for p in data["plans"].values() if p.get("price_env"))


# ---- serverless.yml ----------------------------------------------------------------------------------------------

SERVERLESS_HEADER = """\
# GENERATED by `python -m tools.gendeploy` (make deploy-files) from shared/http/routes.py,
# shared/http/event_functions.py and the settings in tools/gendeploy.py. Do not edit by hand: tests/test_deploy.py
# fails when this file differs.
#
# Every deployed function: its entry point in main.py (`handler`), its trigger (HTTP, or a Pub/Sub topic delivered
# as a CloudEvent), runtime, identity (the service account of exactly the secrets it reads), memory, timeout,
# environment and secrets (Secret Manager).
#
# Production runs these as Cloud Functions 2nd gen, deployed by infra/deploy.sh from the same settings
# (infra/deploy-plan.sh). The Serverless Framework's Google plugin only knows 1st gen (Deployment Manager, and
# Pub/Sub triggers as legacy background events, not CloudEvents), so `serverless deploy` is not the way to deploy
# qorch; this file is the declaration that the checks and the docs read. See docs/deploy.md.
"""


def _email(account: str) -> str:
    return f"{account}@" + "${env:PROJECT}.iam.gserviceaccount.com"


def _env_ref(name: str, default: str = "") -> str:
    return "${env:" + name + ", '" + default + "'}"


def serverless() -> str:
    environment = {"GOOGLE_CLOUD_PROJECT": "${env:PROJECT}", "QORCH_KEY_ENV": "live",
                   **{name: _env_ref(name, default) for name, default in ENVIRONMENT_FROM_DEPLOYER.items()},
                   **{name: _env_ref(name) for name in price_variables()}}
    doc: dict[str, Any] = {
        "service": "qorch",
        "frameworkVersion": "3",
        "configValidationMode": "warn",
        "plugins": ["serverless-google-cloudfunctions"],
        "provider": {
            "name": "google",
            "project": "${env:PROJECT}",
            "region": "${env:REGION, 'europe-west1'}",
            "runtime": RUNTIME,
            "serviceAccountEmail": _email(IDENTITIES[frozenset()][0]),
            "memorySize": DEFAULT.memory_mb,
            "timeout": f"{DEFAULT.timeout_s}s",
            "labels": {"app": "qorch"},
            "environment": environment,
        },
        "package": {"patterns": ["!**", "main.py", "requirements.txt", "shared/**", "functions/**"]},
        "functions": {},
    }
    for fn in functions():
        entry: dict[str, Any] = {"handler": fn.name, "serviceAccountEmail": _email(fn.account),
                                 "memorySize": fn.settings.memory_mb, "timeout": f"{fn.settings.timeout_s}s",
                                 "minInstances": fn.settings.min_instances, "maxInstances": fn.settings.max_instances}
        if fn.trigger == "http":
            entry["events"] = [{"http": True}]
            entry["labels"] = {"trigger": "http"}
        else:
            entry["events"] = [{"event": {"eventType": "google.cloud.pubsub.topic.v1.messagePublished",
                                          "resource": "projects/${env:PROJECT}/topics/" + str(fn.topic)}}]
            entry["labels"] = {"trigger": "cloudevent"}
        if fn.secrets:
            entry["secrets"] = {env: {"secret": SECRETS[env], "version": "latest"} for env in fn.secrets}
        doc["functions"][fn.name] = entry
    return SERVERLESS_HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)


# ---- API Gateway -------------------------------------------------------------------------------------------------

GATEWAY_HEADER = """\
# GENERATED by `python -m tools.gendeploy` from shared/http/routes.py. Do not edit by hand.
# API Gateway config (OpenAPI 2.0): each public /v1 operation → its function, and every path's `options` operation
# (CORS preflights) → cors_preflight. The gateway calls a function with its own identity token (the functions refuse
# unauthenticated calls; the caller's Authorization header reaches the function as X-Forwarded-Authorization).
# The token's audience must be one Cloud Run accepts: the function's Cloud Run service URL (*.run.app), which is
# also the address. infra/deploy.sh replaces each @URL:<function>@ with that URL (serviceConfig.uri) before upload.
"""


def service_url_placeholder(function: str) -> str:
    return f"@URL:{function}@"


def _backend(fn: Function) -> dict[str, Any]:
    url = service_url_placeholder(fn.name)
    return {"address": url, "jwt_audience": url, "path_translation": "APPEND_PATH_TO_ADDRESS",
            "deadline": float(fn.settings.timeout_s)}


def _preflight_operation_id(path: str) -> str:
    return "preflight_" + "_".join(p.strip("{}") for p in path.split("/")[2:] if p).replace("-", "_").replace(
        ".", "_")


def api_gateway() -> str:
    paths: dict[str, dict[str, Any]] = {}
    by_name = {fn.name: fn for fn in functions()}
    for route in ROUTES:
        op: dict[str, Any] = {"operationId": route.function, "summary": route.summary,
                              "x-google-backend": _backend(by_name[route.function])}
        if route.params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "type": "string"} for p in route.params]
        op["responses"] = {str(route.status): {"description": "Success"},
                           "default": {"description": "application/problem+json (RFC 9457) with a stable code"}}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    preflight = by_name[PREFLIGHT_FUNCTION]
    for path, ops in paths.items():
        methods = ", ".join(sorted(m.upper() for m in ops))
        op = {"operationId": _preflight_operation_id(path), "summary": f"CORS preflight ({methods})",
              "x-google-backend": _backend(preflight)}
        params = next(r.params for r in ROUTES if r.path == path)
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "type": "string"} for p in params]
        op["responses"] = {"204": {"description": "The path's methods, and CORS headers for an allowed origin"},
                           "default": {"description": "application/problem+json (RFC 9457) with a stable code"}}
        ops["options"] = op
    doc = {
        "swagger": "2.0",
        "info": {"title": "qorch", "version": "1.0.0",
                 "description": "qorch public API; the full description is GET /v1/openapi.json"},
        "schemes": ["https"],
        "produces": ["application/json"],
        "paths": paths,
    }
    return GATEWAY_HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)


# ---- deploy plan -------------------------------------------------------------------------------------------------

PLAN_HEADER = """\
# GENERATED by `python -m tools.gendeploy` from shared/http/routes.py, shared/http/event_functions.py,
# infra/firestore.indexes.json, shared/domain/plans.json and tools/gendeploy.py. Do not edit by hand.
# Sourced by infra/deploy.sh, which defines every ensure_* / deploy_* function used here.
# shellcheck shell=bash
"""


def _q(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _index_field(field: dict[str, str]) -> str:
    if "arrayConfig" in field:
        return f"field-path={field['fieldPath']},array-config={field['arrayConfig'].lower()}"
    return f"field-path={field['fieldPath']},order={field['order'].lower()}"


def deploy_plan() -> str:
    fns = functions()
    indexes = json.loads((ROOT / "infra" / "firestore.indexes.json").read_text())
    readers = accounts_by_secret()
    lines = [PLAN_HEADER]
    lines.append("# Runtime identities: one service account per set of secrets its functions read (IDENTITIES).")
    lines.append("plan_runtime_accounts() {")
    lines += [f"  ensure_runtime_account {name} {_q(title)}" for name, title in IDENTITIES.values()]
    lines.append("}")
    lines.append("PLAN_RUNTIME_ACCOUNTS=(" + " ".join(name for name, _ in IDENTITIES.values()) + ")\n")
    lines.append("# Secret Manager secrets: name, the env var that may carry its value, then the only runtime accounts")
    lines.append("# that may read it (those of the functions that read it).")
    lines.append("plan_secrets() {")
    lines += [f"  ensure_secret {SECRETS[env]} {env} {' '.join(readers[env])}".rstrip() for env in SECRETS]
    lines.append("}")
    lines.append("PLAN_SECRETS=(" + " ".join(SECRETS.values()) + ")\n")
    lines.append("# The functions that mount a secret (to redeploy them when its value changes).")
    lines.append("plan_secret_functions() {")
    lines.append('  case "$1" in')
    for env, secret in SECRETS.items():
        lines.append(f"    {secret}) echo {' '.join(fn.name for fn in fns if env in fn.secrets)} ;;")
    lines.append('    *) echo "no secret named $1 (see plan_secrets)" >&2; return 2 ;;')
    lines.append("  esac")
    lines.append("}\n")
    lines.append("# Plain configuration every function receives (values from the deployer's environment).")
    lines.append("PLAN_ENVIRONMENT=(" + " ".join((*ENVIRONMENT_FROM_DEPLOYER, *price_variables())) + ")\n")
    lines.append("# Functions: name, trigger (http | topic:TOPIC), runtime account, memory MB, cpu, timeout s,")
    lines.append("# concurrency, min and max instances, then the secrets (ENV=secret) it may read. Everything else")
    lines.append("# about a function is in deploy_function (infra/deploy.sh).")
    lines.append("PLAN_FUNCTIONS=(" + " ".join(fn.name for fn in fns) + ")")
    lines.append("plan_function() {")
    lines.append('  case "$1" in')
    for fn in fns:
        trigger = "http" if fn.trigger == "http" else f"topic:{fn.topic}"
        secrets = ",".join(f"{env}={SECRETS[env]}:latest" for env in fn.secrets)
        s = fn.settings
        where = (f"{fn.method} {fn.path}" if fn.method else "OPTIONS of every /v1 path, behind the gateway") \
            if fn.trigger == "http" else f"schedule {fn.schedule}"
        lines.append(f"    {fn.name})  # {where}")
        lines.append(f"      deploy_function {fn.name} {trigger} {fn.account} {s.memory_mb} {s.cpu} {s.timeout_s} "
                     f"{s.concurrency} {s.min_instances} {s.max_instances} {_q(secrets)} ;;")
    lines.append('    *) echo "no function named $1 (see PLAN_FUNCTIONS)" >&2; return 2 ;;')
    lines.append("  esac")
    lines.append("}\n")
    lines.append("# Firestore: composite indexes, then single-field overrides (exemptions, collection-group scopes),")
    lines.append("# each with its TTL policy in the same field update, from infra/firestore.indexes.json.")
    lines.append("plan_firestore() {")
    for index in indexes["indexes"]:
        fields = " ".join(_index_field(f) for f in index["fields"])
        lines.append(f"  ensure_index {index['collectionGroup']} {index['queryScope'].lower().replace('_', '-')} "
                     f"{fields}")
    for override in indexes.get("fieldOverrides", []):
        config = {"indexes": [{"queryScope": i.get("queryScope", "COLLECTION"),
                               "fields": [{"fieldPath": override["fieldPath"],
                                           **({"arrayConfig": i["arrayConfig"]} if "arrayConfig" in i
                                              else {"order": i["order"]})}]}
                              for i in override["indexes"]]}
        lines.append(f"  ensure_field {override['collectionGroup']} {override['fieldPath']} "
                     f"{_q(json.dumps(config, separators=(',', ':')))} {'ttl' if override.get('ttl') else 'no-ttl'}")
    lines.append("}\n")
    lines.append("# Pub/Sub topics, created before the functions they trigger.")
    lines.append("plan_topics() {")
    lines += [f"  ensure_topic {topic}" for topic in dict.fromkeys(f.topic for f in EVENT_FUNCTIONS)]
    lines.append("}\n")
    lines.append("# Cloud Scheduler → Pub/Sub topic → CloudEvent function.")
    lines.append("plan_schedules() {")
    for f in EVENT_FUNCTIONS:
        lines.append(f"  ensure_schedule {f.function} {f.topic} {_q(f.schedule)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- files -------------------------------------------------------------------------------------------------------

def outputs() -> dict[Path, str]:
    return {ROOT / "serverless.yml": serverless(), ROOT / "infra" / "api-gateway.yaml": api_gateway(),
            ROOT / "infra" / "deploy-plan.sh": deploy_plan()}


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path.relative_to(ROOT))
            if not check:
                path.write_text(text)
    if check and stale:
        print("out of date (run `make deploy-files`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    print("up to date" if not stale else "wrote " + ", ".join(map(str, stale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

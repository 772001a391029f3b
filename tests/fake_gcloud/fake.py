"""A stand-in for `gcloud` and `curl`, so `infra/deploy.sh` can run without a cloud (tests/test_deploy_script.py).

    fake.py gcloud ARGS...      fake.py curl ARGS...

State lives in $FAKE_GCLOUD_DIR/state.json (one project), every call is appended to $FAKE_GCLOUD_DIR/calls.jsonl
(argv, exit status, stderr, and for curl the method, URL and headers), under a file lock (deploy.sh deploys
functions in parallel).

It answers like the real tools, as the gcloud reference (`gcloud ... --help`, SDK 528) and the REST references
describe them, for the commands deploy.sh uses, and refuses any other command or flag (`unrecognized arguments`),
so the script cannot rely on something the real tool lacks. It holds what the real services enforce where a first
deployment goes wrong: an API must be enabled before its commands work; a trigger's topic must exist; a function
whose secret has no enabled version, or whose runtime account may not read it, does not start; a build runs as the
build service account, and a project made since mid-2024 gives the default one no roles; the gateway's ID token
must carry an audience the Cloud Run service accepts (its URL); the Firebase Rules API refuses user credentials
without a quota project (X-Goog-User-Project); two updates of one Firestore field while its operation runs fail.

And it injects the documented transient failures, once each, as configured in the state's "inject" (by the test):
  iam_not_exist      binding a new service account fails "does not exist" this many times (per account)
  index_contention   these composite-index create calls (1-based) fail 409 "too much contention"
  eventarc_not_ready the first N deploys of an event-triggered function fail "Permission denied while using the
                     Eventarc Service Agent"
  field_op_running   fields (group/field) whose first update fails: an operation on the field is still running
Nothing here talks to a network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent.parent
DIR = Path(os.environ.get("FAKE_GCLOUD_DIR", "fake-gcloud"))
STATE_FILE = DIR / "state.json"
LOG_FILE = DIR / "calls.jsonl"
TOKEN = "ya29.fake-access-token"
BUILD_ROLES = {"roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectAdmin"}
FIELD_OP_CALLS = 3  # a field operation "runs" for this many further Firestore admin calls


def initial_state(project: str = "qorch-fake") -> dict[str, Any]:
    return {"project": project, "number": "123456789012", "enabled": [], "eventarc_identity": False,
            "database": None, "indexes": [], "index_creates": 0, "fields": {}, "rulesets": [], "release": None,
            "accounts": {}, "project_bindings": {}, "secrets": {}, "topics": [], "functions": {}, "jobs": {},
            "api": None, "configs": {}, "gateway": None, "revision_counter": 0,
            "inject": {"iam_not_exist": 0, "index_contention": [], "eventarc_not_ready": 0, "field_op_running": []}}


class Failure(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---- the gcloud command line -------------------------------------------------------------------------------------

GLOBAL = {"project": "value", "quiet": "bool", "format": "value", "verbosity": "value"}
V, B, M = "value", "bool", "multi"
LIST = {"filter": V, "limit": V, "sort-by": V}  # the flags of list commands
# command path → its flags (besides the global ones), from `gcloud <path> --help`
COMMANDS: dict[tuple[str, ...], dict[str, str]] = {
    ("auth", "print-access-token"): {},
    ("services", "enable"): {"async": B},
    ("firestore", "databases", "describe"): {"database": V},
    ("firestore", "databases", "create"): {"location": V, "database": V, "type": V, "delete-protection": B,
                                           "enable-pitr": B, "edition": V},
    ("firestore", "indexes", "composite", "create"): {"collection-group": V, "query-scope": V, "field-config": M,
                                                      "async": B, "database": V, "api-scope": V},
    ("iam", "service-accounts", "describe"): {},
    ("iam", "service-accounts", "create"): {"display-name": V, "description": V},
    ("projects", "add-iam-policy-binding"): {"member": V, "role": V, "condition": V},
    ("secrets", "describe"): {},
    ("secrets", "create"): {"replication-policy": V, "labels": V, "data-file": V},
    ("secrets", "add-iam-policy-binding"): {"member": V, "role": V, "condition": V},
    ("secrets", "remove-iam-policy-binding"): {"member": V, "role": V, "condition": V, "all": B},
    ("secrets", "get-iam-policy"): {},
    ("secrets", "versions", "add"): {"data-file": V},
    ("secrets", "versions", "list"): LIST,
    ("secrets", "versions", "access"): {"secret": V, "out-file": V},
    ("pubsub", "topics", "describe"): {},
    ("pubsub", "topics", "create"): {"labels": V},
    ("functions", "deploy"): {
        "gen2": B, "region": V, "runtime": V, "source": V, "entry-point": V, "service-account": V,
        "build-service-account": V, "memory": V, "cpu": V, "timeout": V, "concurrency": V, "min-instances": V,
        "max-instances": V, "env-vars-file": V, "update-labels": V, "serve-all-traffic-latest-revision": B,
        "set-secrets": V, "clear-secrets": B, "trigger-http": B, "no-allow-unauthenticated": B,
        "allow-unauthenticated": B, "ingress-settings": V, "trigger-topic": V, "trigger-service-account": V},
    ("functions", "describe"): {"region": V},
    ("functions", "list"): {"regions": V, "v2": B, **LIST},
    ("functions", "add-invoker-policy-binding"): {"region": V, "member": V},
    ("run", "revisions", "list"): {"service": V, "region": V, **LIST},
    ("run", "services", "update-traffic"): {"region": V, "to-revisions": V, "to-latest": B},
    ("scheduler", "jobs", "describe"): {"location": V},
    ("scheduler", "jobs", "create", "pubsub"): {"location": V, "schedule": V, "topic": V, "message-body": V,
                                                "time-zone": V, "description": V},
    ("scheduler", "jobs", "update", "pubsub"): {"location": V, "schedule": V, "topic": V, "message-body": V,
                                                "time-zone": V, "description": V},
    ("api-gateway", "apis", "describe"): {},
    ("api-gateway", "apis", "create"): {},
    ("api-gateway", "api-configs", "describe"): {"api": V},
    ("api-gateway", "api-configs", "create"): {"api": V, "openapi-spec": V, "backend-auth-service-account": V},
    ("api-gateway", "gateways", "describe"): {"location": V},
    ("api-gateway", "gateways", "create"): {"location": V, "api": V, "api-config": V},
    ("api-gateway", "gateways", "update"): {"location": V, "api": V, "api-config": V},
}
# which API each command group needs enabled
NEEDS_API = {"firestore": "firestore.googleapis.com", "secrets": "secretmanager.googleapis.com",
             "pubsub": "pubsub.googleapis.com", "functions": "cloudfunctions.googleapis.com",
             "run": "run.googleapis.com", "scheduler": "cloudscheduler.googleapis.com",
             "api-gateway": "apigateway.googleapis.com", "iam": "iam.googleapis.com"}


def parse(argv: list[str]) -> tuple[tuple[str, ...], list[str], dict[str, Any]]:
    words = [a for a in argv if not a.startswith("--")]
    path = next((p for p in sorted(COMMANDS, key=len, reverse=True) if tuple(words[:len(p)]) == p), None)
    if path is None:
        raise Failure(f"ERROR: (gcloud) Invalid choice: {' '.join(words[:3])!r}.", 2)
    spec = {**GLOBAL, **COMMANDS[path]}
    flags: dict[str, Any] = {}
    positionals: list[str] = []
    it = iter(argv)
    for arg in it:
        if not arg.startswith("--"):
            positionals.append(arg)
            continue
        name, eq, value = arg[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise Failure(f"ERROR: (gcloud.{'.'.join(path)}) unrecognized arguments: {arg}", 2)
        if kind == B:
            if eq:
                raise Failure(f"ERROR: (gcloud.{'.'.join(path)}) argument --{name}: ignored explicit argument", 2)
            flags[name] = True
            continue
        if not eq:
            value = next(it, None)
            if value is None:
                raise Failure(f"ERROR: (gcloud.{'.'.join(path)}) argument --{name}: expected one argument", 2)
        if kind == M:
            flags.setdefault(name, []).append(value)
        else:
            flags[name] = value
    return path, positionals[len(path):], flags


# ---- output --------------------------------------------------------------------------------------------------------


def get(resource: Any, key: str) -> Any:
    transform = None
    if key.endswith(".basename()"):
        key, transform = key[: -len(".basename()")], "basename"
    value = resource
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if transform == "basename" and isinstance(value, str):
        value = value.rsplit("/", 1)[-1]
    return value


def render(result: Any, flags: dict[str, Any]) -> str:
    fmt = flags.get("format")
    items = result if isinstance(result, list) else [result]
    if "filter" in flags:
        key, _, want = flags["filter"].partition(":")
        items = [i for i in items if str(get(i, key)) == want]
    if "sort-by" in flags:
        key = flags["sort-by"]
        items = sorted(items, key=lambda i: str(get(i, key.lstrip("~"))), reverse=key.startswith("~"))
    if "limit" in flags:
        items = items[: int(flags["limit"])]
    if fmt is None:
        return "".join(json.dumps(i, indent=2) + "\n" for i in items) if result is not None else ""
    if fmt == "json":
        return json.dumps(items if isinstance(result, list) else result, indent=2) + "\n"
    found = re.fullmatch(r"value\((.+)\)", fmt)
    if not found:
        raise Failure(f"ERROR: (gcloud) the stand-in knows no format {fmt!r}", 2)
    keys = [k.strip() for k in found.group(1).split(",")]
    lines = ["\t".join("" if get(i, k) is None else str(get(i, k)) for k in keys) for i in items]
    return "".join(line + "\n" for line in lines)


# ---- gcloud commands ---------------------------------------------------------------------------------------------


class Gcloud:
    def __init__(self, state: dict[str, Any], path: tuple[str, ...], args: list[str], flags: dict[str, Any],
                 stdin: bytes) -> None:
        self.s, self.path, self.args, self.flags, self.stdin = state, path, args, flags, stdin
        self.err: list[str] = []
        self.project = state["project"]

    def fail(self, message: str) -> NoReturn:
        raise Failure(f"ERROR: (gcloud.{'.'.join(self.path)}) {message}")

    def arg(self, n: int = 0) -> str:
        if len(self.args) <= n:
            raise Failure(f"ERROR: (gcloud.{'.'.join(self.path)}) argument NAME: Must be specified.", 2)
        return self.args[n]

    def need(self, *names: str) -> None:
        for name in names:
            if name not in self.flags:
                raise Failure(f"ERROR: (gcloud.{'.'.join(self.path)}) argument --{name}: Must be specified.", 2)

    def email(self, name: str) -> str:
        return f"{name}@{self.project}.iam.gserviceaccount.com"

    def check_member(self, member: str) -> None:
        """A principal of this project's service accounts must exist, and a new one is not yet visible at once."""
        kind, _, email = member.partition(":")
        if kind != "serviceAccount" or not email.endswith(f"@{self.project}.iam.gserviceaccount.com"):
            return
        account = self.s["accounts"].get(email)
        if account is None:
            self.fail(f"INVALID_ARGUMENT: Service account {email} does not exist.")
        if account["unseen"] > 0:
            account["unseen"] -= 1
            self.fail(f"INVALID_ARGUMENT: Service account {email} does not exist.")

    def run(self) -> Any:
        if self.path[0] != "auth":
            if self.flags.get("project") != self.project:
                self.fail(f"The project property must be set to a valid project ID, not "
                          f"[{self.flags.get('project')}].")
            needed = NEEDS_API.get(self.path[0])
            if needed and needed not in self.s["enabled"]:
                self.fail(f"PERMISSION_DENIED: {needed} has not been used in project {self.s['number']} before or "
                          "it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
                          f"{needed}/overview?project={self.s['number']} then retry.")
        handler = getattr(self, "_".join(p.replace("-", "_") for p in self.path))
        return handler()

    # -- auth, services
    def auth_print_access_token(self) -> str:
        return RawOutput(TOKEN + "\n")

    def services_enable(self) -> None:
        for api in self.args or [self.arg()]:
            known = api.endswith(".googleapis.com") or (self.s["api"] and api == self.s["api"]["managedService"])
            if not known:
                self.fail(f"NOT_FOUND: Service {api} not found or permission denied.")
            if api not in self.s["enabled"]:
                self.s["enabled"].append(api)

    # -- firestore
    def firestore_databases_describe(self) -> Any:
        if self.s["database"] is None:
            self.fail(f"NOT_FOUND: Project '{self.project}' or database '(default)' does not exist.")
        return self.s["database"]

    def firestore_databases_create(self) -> Any:
        self.need("location")
        if self.s["database"] is not None:
            self.fail("ALREADY_EXISTS: Database already exists. Please use another database_id")
        if self.flags.get("type", "firestore-native") != "firestore-native":
            self.fail("INVALID_ARGUMENT: the stand-in makes native databases only")
        self.s["database"] = {"name": f"projects/{self.project}/databases/(default)", "type": "FIRESTORE_NATIVE",
                              "locationId": self.flags["location"],
                              "deleteProtectionState": "DELETE_PROTECTION_ENABLED"
                              if self.flags.get("delete-protection") else "DELETE_PROTECTION_DISABLED"}
        return self.s["database"]

    def firestore_indexes_composite_create(self) -> Any:
        self.need("collection-group", "field-config")
        if self.s["database"] is None:
            self.fail(f"NOT_FOUND: The database (default) does not exist for project {self.project}")
        self.s["index_creates"] += 1
        if self.s["index_creates"] in self.s["inject"]["index_contention"]:
            self.fail("ABORTED: too much contention on these datastore entities. please try again.")
        fields = []
        for config in self.flags["field-config"]:
            parts = dict(p.split("=", 1) for p in config.split(","))
            if set(parts) - {"field-path", "order", "array-config"} or ("order" in parts) == (
                    "array-config" in parts):
                raise Failure("ERROR: (gcloud.firestore.indexes.composite.create) Invalid value for "
                              f"[--field-config]: {config}", 2)
            fields.append(parts)
        index = {"collectionGroup": self.flags["collection-group"],
                 "queryScope": self.flags.get("query-scope", "collection"), "fields": fields}
        if index in self.s["indexes"]:
            self.fail("ALREADY_EXISTS: index already exists")
        self.s["indexes"].append(index)
        self.err.append("Create request issued")
        return None

    # -- iam
    def iam_service_accounts_describe(self) -> Any:
        email = self.arg()
        if email not in self.s["accounts"]:
            self.fail(f"NOT_FOUND: Unknown service account {email}")
        return {"email": email, "displayName": self.s["accounts"][email]["display"]}

    def iam_service_accounts_create(self) -> Any:
        name = self.arg()
        if not re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", name):
            self.fail(f"INVALID_ARGUMENT: Invalid account ID {name}")
        email = self.email(name)
        if email in self.s["accounts"]:
            self.fail(f"ALREADY_EXISTS: Service account {name} already exists within project projects/"
                      f"{self.project}.")
        self.s["accounts"][email] = {"display": self.flags.get("display-name", ""),
                                     "unseen": self.s["inject"]["iam_not_exist"]}
        self.err.append(f"Created service account [{name}].")
        return None

    def projects_add_iam_policy_binding(self) -> Any:
        self.need("member", "role")
        if self.arg() != self.project:
            self.fail(f"PERMISSION_DENIED: project {self.arg()} not found")
        self.check_member(self.flags["member"])
        members = self.s["project_bindings"].setdefault(self.flags["role"], [])
        if self.flags["member"] not in members:
            members.append(self.flags["member"])
        self.err.append(f"Updated IAM policy for project [{self.project}].")
        return {"bindings": [{"role": r, "members": m} for r, m in sorted(self.s["project_bindings"].items())]}

    # -- secrets
    def secret(self, name: str) -> dict[str, Any]:
        if name not in self.s["secrets"]:
            self.fail(f"NOT_FOUND: Secret [projects/{self.s['number']}/secrets/{name}] not found or has no "
                      "versions.")
        return self.s["secrets"][name]

    def secrets_describe(self) -> Any:
        self.secret(self.arg())
        return {"name": f"projects/{self.s['number']}/secrets/{self.arg()}"}

    def secrets_create(self) -> Any:
        if self.arg() in self.s["secrets"]:
            self.fail(f"ALREADY_EXISTS: Secret [projects/{self.s['number']}/secrets/{self.arg()}] already exists.")
        self.s["secrets"][self.arg()] = {"versions": [], "accessors": []}
        self.err.append(f"Created secret [{self.arg()}].")
        return None

    def secrets_add_iam_policy_binding(self) -> Any:
        self.need("member", "role")
        secret = self.secret(self.arg())
        self.check_member(self.flags["member"])
        if self.flags["role"] != "roles/secretmanager.secretAccessor":
            self.fail("the stand-in grants roles/secretmanager.secretAccessor only")
        if self.flags["member"] not in secret["accessors"]:
            secret["accessors"].append(self.flags["member"])
        self.err.append(f"Updated IAM policy for secret [{self.arg()}].")
        return self.policy(secret)

    def policy(self, secret: dict[str, Any]) -> Any:
        bindings = [{"role": "roles/secretmanager.secretAccessor", "members": sorted(secret["accessors"])}] \
            if secret["accessors"] else []
        return {"bindings": bindings, "etag": "BwYfake", "version": 1} if bindings else {"etag": "ACAB"}

    def secrets_get_iam_policy(self) -> Any:
        return self.policy(self.secret(self.arg()))

    def secrets_remove_iam_policy_binding(self) -> Any:
        self.need("member", "role")
        secret = self.secret(self.arg())
        if self.flags["member"] not in secret["accessors"]:
            self.fail("Policy binding with the specified principal, role, and condition not found!")
        secret["accessors"].remove(self.flags["member"])
        self.err.append(f"Updated IAM policy for secret [{self.arg()}].")
        return self.policy(secret)

    def version_resource(self, name: str, version: dict[str, Any]) -> dict[str, Any]:
        return {"name": f"projects/{self.s['number']}/secrets/{name}/versions/{version['n']}",
                "state": version["state"], "createTime": f"2026-12-01T00:00:{version['n']:02d}Z"}

    def secrets_versions_add(self) -> Any:
        self.need("data-file")
        secret = self.secret(self.arg())
        data = self.stdin if self.flags["data-file"] == "-" else Path(self.flags["data-file"]).read_bytes()
        if not data:
            self.fail("INVALID_ARGUMENT: Secret Payload cannot be empty.")
        version = {"n": len(secret["versions"]) + 1, "state": "ENABLED", "value": data.decode()}
        secret["versions"].append(version)
        self.err.append(f"Created version [{version['n']}] of the secret [{self.arg()}].")
        return None

    def secrets_versions_list(self) -> Any:
        secret = self.secret(self.arg())
        # newest first, as the API lists them
        return [self.version_resource(self.arg(), v) for v in reversed(secret["versions"])]

    def secrets_versions_access(self) -> Any:
        self.need("secret")
        secret = self.secret(self.flags["secret"])
        wanted = self.arg()
        if not secret["versions"]:
            self.fail(f"NOT_FOUND: Secret Version [projects/{self.s['number']}/secrets/{self.flags['secret']}/"
                      f"versions/{wanted}] not found.")
        version = secret["versions"][-1] if wanted == "latest" else next(
            (v for v in secret["versions"] if str(v["n"]) == wanted), None)
        if version is None:
            self.fail(f"NOT_FOUND: Secret Version [{wanted}] not found.")
        if version["state"] != "ENABLED":
            self.fail(f"FAILED_PRECONDITION: Secret Version [projects/{self.s['number']}/secrets/"
                      f"{self.flags['secret']}/versions/{version['n']}] is in DISABLED state.")
        return RawOutput(version["value"])

    # -- pubsub
    def pubsub_topics_describe(self) -> Any:
        if self.arg() not in self.s["topics"]:
            self.fail(f"NOT_FOUND: Resource not found (resource={self.arg()}).")
        return {"name": f"projects/{self.project}/topics/{self.arg()}"}

    def pubsub_topics_create(self) -> Any:
        if self.arg() in self.s["topics"]:
            self.fail(f"Failed to create topic [projects/{self.project}/topics/{self.arg()}]: Resource already "
                      "exists in the project (resource=qorch-cleanup).")
        self.s["topics"].append(self.arg())
        self.err.append(f"Created topic [projects/{self.project}/topics/{self.arg()}].")
        return None

    # -- functions
    def function(self, name: str) -> dict[str, Any]:
        fn = self.s["functions"].get(name)
        if fn is None or fn["region"] != self.flags.get("region"):
            self.fail(f"ResponseError: status=[404], code=[Ok], message=[Resource 'projects/{self.project}/"
                      f"locations/{self.flags.get('region')}/functions/{name}' was not found]")
        return fn

    def deploy_failure(self, name: str, detail: str) -> NoReturn:
        self.fail(f"OperationError: code=3, message=Could not create or update Cloud Run service "
                  f"{name.replace('_', '-')}, Container Healthcheck failed. {detail}")

    def functions_deploy(self) -> Any:
        name, f = self.arg(), self.flags
        self.need("region", "runtime", "source", "entry-point", "service-account")
        for api in ("run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com"):
            if api not in self.s["enabled"]:
                self.fail(f"PERMISSION_DENIED: {api} has not been used in project {self.s['number']} before")
        if f["runtime"] != "python312" or not f.get("gen2"):
            self.fail("INVALID_ARGUMENT: the stand-in deploys 2nd gen python312 functions only")
        if not (Path(f["source"]) / "functions" / f"{f['entry-point']}.py").is_file():
            self.fail(f"OperationError: code=3, message=Build failed: function {f['entry-point']} is not defined")
        if f["service-account"] not in self.s["accounts"]:
            self.fail(f"INVALID_ARGUMENT: Service account {f['service-account']} does not exist.")
        # The build: as the given build service account, or the Compute Engine default one, which in a project
        # made since mid-2024 holds no roles.
        build = f.get("build-service-account", f"projects/{self.project}/serviceAccounts/"
                                               f"{self.s['number']}-compute@developer.gserviceaccount.com")
        found = re.fullmatch(rf"projects/{re.escape(self.project)}/serviceAccounts/(.+)", build)
        if not found:
            self.fail(f"INVALID_ARGUMENT: Invalid build service account {build}: must be of the form "
                      "projects/${PROJECT_ID}/serviceAccounts/${ACCOUNT_EMAIL_ADDRESS}")
        roles = {r for r, m in self.s["project_bindings"].items() if f"serviceAccount:{found.group(1)}" in m}
        if not BUILD_ROLES <= roles:
            self.fail(f"OperationError: code=3, message=Build failed with status: FAILURE. Could not build the "
                      f"function due to a missing permission on the build service account {found.group(1)}. "
                      f"(missing {sorted(BUILD_ROLES - roles)})")
        if f.get("set-secrets") and f.get("clear-secrets"):
            raise Failure("ERROR: (gcloud.functions.deploy) argument --clear-secrets: At most one of "
                          "--clear-secrets | --set-secrets may be specified.", 2)
        # Secrets resolve when an instance starts: no enabled version, or no access, and it never starts.
        secrets: dict[str, str] = {}
        for item in (f.get("set-secrets") or "").split(",") if f.get("set-secrets") else []:
            env, _, ref = item.partition("=")
            secret_name, _, version = ref.partition(":")
            secret = self.s["secrets"].get(secret_name)
            if secret is None or not secret["versions"] or (
                    version == "latest" and secret["versions"][-1]["state"] != "ENABLED"):
                self.deploy_failure(name, f"Secret projects/{self.s['number']}/secrets/{secret_name}/versions/"
                                          f"{version} was not found")
            if f"serviceAccount:{f['service-account']}" not in secret["accessors"]:
                self.deploy_failure(name, f"Permission denied on secret: projects/{self.s['number']}/secrets/"
                                          f"{secret_name}/versions/{version} for Revision service account "
                                          f"{f['service-account']}.")
            secrets[env] = secret["versions"][-1]["value"]
        trigger: dict[str, Any]
        if f.get("trigger-http"):
            trigger = {"http": True, "public": bool(f.get("allow-unauthenticated"))}
        elif f.get("trigger-topic"):
            if "eventarc.googleapis.com" not in self.s["enabled"]:
                self.fail("PERMISSION_DENIED: eventarc.googleapis.com has not been used in project before")
            if f["trigger-topic"] not in self.s["topics"]:
                self.fail(f"INVALID_ARGUMENT: Pub/Sub topic projects/{self.project}/topics/{f['trigger-topic']} "
                          "does not exist")
            if f.get("trigger-service-account") not in self.s["accounts"]:
                self.fail(f"INVALID_ARGUMENT: Service account {f.get('trigger-service-account')} does not exist.")
            if self.s["inject"]["eventarc_not_ready"] > 0:
                self.s["inject"]["eventarc_not_ready"] -= 1
                self.fail("ResponseError: status=[403], code=[Ok], message=[Permission denied while using the "
                          "Eventarc Service Agent. If you recently started to use Eventarc, it may take a few "
                          "minutes before all necessary permissions are propagated to the Service Agent. Otherwise, "
                          "verify that it has Eventarc Service Agent role.]")
            trigger = {"topic": f["trigger-topic"], "serviceAccount": f["trigger-service-account"]}
        else:
            self.fail("INVALID_ARGUMENT: a trigger is required")
        env: dict[str, str] = {}
        if f.get("env-vars-file"):
            import yaml

            env = {k: str(v) for k, v in (yaml.safe_load(Path(f["env-vars-file"]).read_text()) or {}).items()}
        existing = self.s["functions"].get(name)
        service = name.replace("_", "-")
        self.s["revision_counter"] += 1
        revision = f"{service}-{len(existing['revisions']) + 1 if existing else 1:05d}-r{self.s['revision_counter']}"
        digest = hashlib.sha256(f"{self.project}/{name}".encode()).hexdigest()[:10]
        fn = existing or {"region": f["region"], "revisions": [], "traffic": None, "invokers": [],
                          "uri": f"https://{service}-{digest}-ew.a.run.app", "service": service}
        fn.update(account=f["service-account"], trigger=trigger, env=env, secret_env=secrets,
                  build=found.group(1), memory=f.get("memory"), labels=f.get("update-labels"))
        fn["revisions"].append({"name": revision, "at": self.s["revision_counter"]})
        if fn["traffic"] is not None and not f.get("serve-all-traffic-latest-revision"):
            self.err.append("WARNING: The latest revision of this function is not serving 100% of traffic. Please "
                            "see the associated Cloud Run service to confirm your expected traffic settings.")
        else:
            fn["traffic"] = None  # all traffic on the latest revision
        self.s["functions"][name] = fn
        return self.describe_function(name, fn)

    def describe_function(self, name: str, fn: dict[str, Any]) -> dict[str, Any]:
        region = fn["region"]
        return {"name": f"projects/{self.project}/locations/{region}/functions/{name}", "state": "ACTIVE",
                "environment": "GEN_2", "url": f"https://{region}-{self.project}.cloudfunctions.net/{name}",
                "buildConfig": {"serviceAccount": f"projects/{self.project}/serviceAccounts/{fn['build']}",
                                "runtime": "python312", "entryPoint": name},
                "serviceConfig": {"service": f"projects/{self.project}/locations/{region}/services/{fn['service']}",
                                  "uri": fn["uri"], "serviceAccountEmail": fn["account"],
                                  "allTrafficOnLatestRevision": fn["traffic"] is None,
                                  "revision": fn["revisions"][-1]["name"]}}

    def functions_describe(self) -> Any:
        return self.describe_function(self.arg(), self.function(self.arg()))

    def functions_list(self) -> Any:
        regions = self.flags.get("regions", "-").split(",")
        return [self.describe_function(name, fn) for name, fn in sorted(self.s["functions"].items())
                if "-" in regions or fn["region"] in regions]

    def functions_add_invoker_policy_binding(self) -> Any:
        self.need("member")
        fn = self.function(self.arg())
        self.check_member(self.flags["member"])
        if self.flags["member"] not in fn["invokers"]:
            fn["invokers"].append(self.flags["member"])
        return {"bindings": [{"role": "roles/run.invoker", "members": fn["invokers"]}]}

    # -- run
    def service(self, name: str) -> dict[str, Any]:
        fn = next((f for f in self.s["functions"].values() if f["service"] == name), None)
        if fn is None or fn["region"] != self.flags.get("region"):
            self.fail(f"Cannot find service [{name}]")
        return fn

    def run_revisions_list(self) -> Any:
        fn = self.service(self.flags.get("service", ""))
        return [{"metadata": {"name": r["name"], "creationTimestamp": f"2026-12-01T00:{r['at'] // 60:02d}:"
                                                                      f"{r['at'] % 60:02d}Z"}}
                for r in fn["revisions"]]

    def run_services_update_traffic(self) -> Any:
        fn = self.service(self.arg())
        if self.flags.get("to-latest"):
            fn["traffic"] = None
            return None
        self.need("to-revisions")
        revision, _, percent = self.flags["to-revisions"].partition("=")
        if percent != "100" or revision not in [r["name"] for r in fn["revisions"]]:
            self.fail(f"Revision [{revision}] not found, or not 100%")
        fn["traffic"] = revision
        return None

    # -- scheduler
    def scheduler_jobs_describe(self) -> Any:
        job = self.s["jobs"].get(self.arg())
        if job is None:
            self.fail(f"NOT_FOUND: Job not found: projects/{self.project}/locations/{self.flags.get('location')}/"
                      f"jobs/{self.arg()}")
        return job

    def _job(self, create: bool) -> Any:
        self.need("location", "schedule", "topic")
        if self.flags["topic"] not in self.s["topics"]:
            self.fail(f"NOT_FOUND: Topic projects/{self.project}/topics/{self.flags['topic']} not found")
        if create and self.arg() in self.s["jobs"]:
            self.fail("ALREADY_EXISTS: Job already exists.")
        if not create and self.arg() not in self.s["jobs"]:
            self.fail("NOT_FOUND: Job not found.")
        self.s["jobs"][self.arg()] = {"schedule": self.flags["schedule"], "topic": self.flags["topic"],
                                      "timeZone": self.flags.get("time-zone", "Etc/UTC")}
        return self.s["jobs"][self.arg()]

    def scheduler_jobs_create_pubsub(self) -> Any:
        return self._job(create=True)

    def scheduler_jobs_update_pubsub(self) -> Any:
        return self._job(create=False)

    # -- api gateway
    def api_gateway_apis_describe(self) -> Any:
        if self.s["api"] is None or self.s["api"]["name"] != self.arg():
            self.fail(f"NOT_FOUND: Resource 'projects/{self.project}/locations/global/apis/{self.arg()}' was not "
                      "found")
        return self.s["api"]

    def api_gateway_apis_create(self) -> Any:
        if self.s["api"] is not None:
            self.fail("ALREADY_EXISTS: API already exists")
        self.s["api"] = {"name": self.arg(), "managedService": f"{self.arg()}-0abc123.apigateway.{self.project}."
                                                              "cloud.goog"}
        return self.s["api"]

    def api_gateway_api_configs_describe(self) -> Any:
        if self.arg() not in self.s["configs"]:
            self.fail(f"NOT_FOUND: Resource 'apis/{self.flags.get('api')}/configs/{self.arg()}' was not found")
        return {"name": self.arg()}

    def api_gateway_api_configs_create(self) -> Any:
        import yaml

        self.need("api", "openapi-spec")
        if self.s["api"] is None or self.s["api"]["managedService"] not in self.s["enabled"]:
            self.fail("FAILED_PRECONDITION: the API's managed service is not enabled in the project")
        account = self.flags.get("backend-auth-service-account")
        if account is not None:
            self.check_member(f"serviceAccount:{account}")
        spec = yaml.safe_load(Path(self.flags["openapi-spec"]).read_text())
        if spec.get("swagger") != "2.0":
            self.fail("INVALID_ARGUMENT: Cannot convert to service config: not an OpenAPI 2.0 document")
        seen: set[str] = set()
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                op_id = op.get("operationId")
                if not op_id or op_id in seen:
                    self.fail(f"INVALID_ARGUMENT: operationId {op_id!r} of {method} {path} is missing or not unique")
                seen.add(op_id)
                backend = op.get("x-google-backend", {})
                if not str(backend.get("address", "")).startswith("https://") or "@" in backend["address"]:
                    self.fail(f"INVALID_ARGUMENT: invalid x-google-backend address {backend.get('address')!r} "
                              f"({method} {path})")
        self.s["configs"][self.arg()] = {"spec": spec, "account": account}
        return None

    def api_gateway_gateways_describe(self) -> Any:
        if self.s["gateway"] is None:
            self.fail(f"NOT_FOUND: Resource 'projects/{self.project}/locations/{self.flags.get('location')}/"
                      f"gateways/{self.arg()}' was not found")
        return self.s["gateway"]

    def _gateway(self, create: bool) -> Any:
        self.need("location", "api", "api-config")
        if self.flags["api-config"] not in self.s["configs"]:
            self.fail(f"NOT_FOUND: API config {self.flags['api-config']} not found")
        if create == (self.s["gateway"] is not None):
            self.fail("ALREADY_EXISTS: Gateway already exists" if create else "NOT_FOUND: Gateway not found")
        self.s["gateway"] = {"name": self.arg(), "apiConfig": f"projects/{self.project}/locations/global/apis/"
                                                              f"{self.flags['api']}/configs/{self.flags['api-config']}",
                             "defaultHostname": f"{self.arg()}-1a2b3c4d.ew.gateway.dev"}
        return self.s["gateway"]

    def api_gateway_gateways_create(self) -> Any:
        return self._gateway(create=True)

    def api_gateway_gateways_update(self) -> Any:
        return self._gateway(create=False)


class RawOutput(str):
    """Printed as is (a secret's payload), whatever the format."""


# ---- curl ----------------------------------------------------------------------------------------------------------


def parse_curl(argv: list[str]) -> dict[str, Any]:
    """The options deploy.sh uses; anything else is refused (e.g. --fail-with-body: curl before 7.76 lacks it)."""
    out: dict[str, Any] = {"method": "GET", "headers": [], "data": None, "output": None, "write": None,
                           "dump": None, "url": None}
    it = iter(argv)
    for arg in it:
        if arg in ("-s", "-S", "-sS", "-g"):
            continue
        if arg == "-X":
            out["method"] = next(it)
        elif arg == "-H":
            out["headers"].append(next(it))
        elif arg in ("--data", "-d"):
            out["data"] = next(it)
            if out["method"] == "GET":
                out["method"] = "POST"
        elif arg == "-o":
            out["output"] = next(it)
        elif arg == "-w":
            out["write"] = next(it)
        elif arg == "-D":
            out["dump"] = next(it)
        elif arg.startswith("-"):
            raise Failure(f"curl: option {arg}: is unknown\ncurl: try 'curl --help' for more information", 2)
        else:
            out["url"] = arg
    if out["url"] is None:
        raise Failure("curl: no URL specified!", 2)
    return out


def http_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = {"error": {"code": status, "message": message, "status": code}}
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body).encode()


def ok(body: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body).encode()


class Http:
    def __init__(self, state: dict[str, Any], request: dict[str, Any]) -> None:
        self.s, self.r = state, request
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in request["headers"])}
        self.url = urlsplit(request["url"])
        self.project = state["project"]

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        host = self.url.hostname or ""
        if host.endswith(".gateway.dev"):
            return self.gateway()
        if self.headers.get("authorization") != f"Bearer {TOKEN}":
            return http_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if host == "firestore.googleapis.com":
            return self.firestore()
        if host == "firebaserules.googleapis.com":
            return self.rules()
        if host == "serviceusage.googleapis.com":
            return self.service_identity()
        return http_error(404, "NOT_FOUND", f"the stand-in knows no host {host}")

    # -- Firestore admin: fields
    def firestore(self) -> tuple[int, dict[str, str], bytes]:
        found = re.fullmatch(rf"/v1/projects/{re.escape(self.project)}/databases/\(default\)/collectionGroups/"
                             r"([^/]+)/fields/([^/]+)", self.url.path)
        if not found:
            return http_error(404, "NOT_FOUND", "unknown Firestore admin path")
        if self.s["database"] is None:
            return http_error(404, "NOT_FOUND", "The database (default) does not exist")
        for other in self.s["fields"].values():  # time passes for running operations
            other["running"] = max(0, other.get("running", 0) - 1)
        key = f"{found.group(1)}/{found.group(2)}"
        name = f"projects/{self.project}/databases/(default)/collectionGroups/{key.replace('/', '/fields/')}"
        field = self.s["fields"].get(key)
        if self.r["method"] == "GET":
            if field is None:  # never configured: the inherited, automatic single-field indexes
                return ok({"name": name, "indexConfig": {"usesAncestorConfig": True, "ancestorField": "__default__",
                                                         "indexes": [{"queryScope": "COLLECTION", "fields": [
                                                             {"fieldPath": found.group(2), "order": "ASCENDING"}]}]}})
            return ok({"name": name, **{k: v for k, v in field.items() if k in ("indexConfig", "ttlConfig")}})
        if self.r["method"] != "PATCH":
            return http_error(405, "METHOD_NOT_ALLOWED", "")
        mask = parse_qs(self.url.query).get("updateMask", [""])[0].split(",")
        if not set(mask) <= {"indexConfig", "ttlConfig"} or not mask[0]:
            return http_error(400, "INVALID_ARGUMENT", f"Invalid update mask {mask}")
        if key in self.s["inject"]["field_op_running"]:
            self.s["inject"]["field_op_running"].remove(key)
            field = self.s["fields"].setdefault(key, {})
            field["running"] = 1
        if field is not None and field.get("running", 0) > 0:
            return http_error(400, "FAILED_PRECONDITION", f"An operation on field {key} is still running; try again "
                                                          "when it has finished.")
        body = json.loads(self.r["data"] or "{}")
        field = self.s["fields"].setdefault(key, {})
        field["patches"] = field.get("patches", 0) + 1
        if "indexConfig" in mask:
            field["indexConfig"] = body.get("indexConfig", {"indexes": []})
        if "ttlConfig" in mask:
            if "ttlConfig" in body:
                field["ttlConfig"] = {"state": "CREATING"}
            else:
                field.pop("ttlConfig", None)
        field["running"] = FIELD_OP_CALLS
        return ok({"name": f"projects/{self.project}/databases/(default)/operations/field-{key.replace('/', '-')}",
                   "metadata": {"@type": "type.googleapis.com/google.firestore.admin.v1.FieldOperationMetadata",
                                "field": name, "state": "PROCESSING"}})

    # -- Firebase Rules
    def rules(self) -> tuple[int, dict[str, str], bytes]:
        if self.headers.get("x-goog-user-project") != self.project:
            return http_error(403, "PERMISSION_DENIED",
                              "Your application is authenticating by using local Application Default Credentials. "
                              "The firebaserules.googleapis.com API requires a quota project, which is not set by "
                              "default.")
        if "firebaserules.googleapis.com" not in self.s["enabled"]:
            return http_error(403, "PERMISSION_DENIED", "Firebase Rules API has not been used in project before")
        base = f"/v1/projects/{self.project}"
        method, path = self.r["method"], self.url.path
        release_name = f"projects/{self.project}/releases/cloud.firestore"
        if method == "POST" and path == f"{base}/rulesets":
            source = json.loads(self.r["data"])["source"]["files"][0]["content"]
            name = f"projects/{self.project}/rulesets/{hashlib.sha256(source.encode()).hexdigest()[:8]}-" \
                   f"{len(self.s['rulesets']) + 1}"
            self.s["rulesets"].append({"name": name, "source": source})
            return ok({"name": name})
        ruleset = next((r for r in self.s["rulesets"] if f"/v1/{r['name']}" == path), None)
        if method == "GET" and ruleset is not None:
            return ok({"name": ruleset["name"], "source": {"files": [{"name": "firestore.rules",
                                                                       "content": ruleset["source"]}]}})
        if path == f"{base}/releases/cloud.firestore" and method == "GET":
            return ok(self.s["release"]) if self.s["release"] else http_error(
                404, "NOT_FOUND", f"Release {release_name} not found")
        if path == f"{base}/releases" and method == "POST":
            body = json.loads(self.r["data"])
            if self.s["release"]:
                return http_error(409, "ALREADY_EXISTS", "release exists")
            self.s["release"] = {"name": body["name"], "rulesetName": body["rulesetName"]}
            return ok(self.s["release"])
        if path == f"{base}/releases/cloud.firestore" and method == "PATCH":
            if not self.s["release"]:
                return http_error(404, "NOT_FOUND", "release not found")
            self.s["release"] = json.loads(self.r["data"])["release"]
            return ok(self.s["release"])
        return http_error(404, "NOT_FOUND", f"{method} {path}")

    def service_identity(self) -> tuple[int, dict[str, str], bytes]:
        if self.url.path != f"/v1beta1/projects/{self.project}/services/eventarc.googleapis.com:" \
                            "generateServiceIdentity" or self.r["method"] != "POST":
            return http_error(404, "NOT_FOUND", self.url.path)
        self.s["eventarc_identity"] = True
        return ok({"name": "operations/finished.DONE_OPERATION", "done": True,
                   "response": {"@type": "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity",
                                "email": f"service-{self.s['number']}@gcp-sa-eventarc.iam.gserviceaccount.com"}})

    # -- the gateway, and behind it Cloud Run's IAM check, and the function itself
    def gateway(self) -> tuple[int, dict[str, str], bytes]:
        gateway = self.s["gateway"]
        if gateway is None or self.url.hostname != gateway["defaultHostname"]:
            return 404, {}, b"not a gateway"
        config = self.s["configs"][gateway["apiConfig"].rsplit("/", 1)[-1]]
        spec = config["spec"]
        method = self.r["method"].lower()
        ops = next((ops for template, ops in spec["paths"].items()
                    if re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), self.url.path)), None)
        if ops is None:
            return http_error(404, "NOT_FOUND", "The current request is not defined by this API.")
        if method not in ops:
            return http_error(405, "METHOD_NOT_ALLOWED", "The current request is matched to the defined url "
                                                         "template but its http method is not allowed")
        backend = ops[method]["x-google-backend"]
        fn_name, fn = next(((n, f) for n, f in self.s["functions"].items() if f["uri"] == backend["address"]),
                           (None, None))
        if fn is None:
            return 503, {"Content-Type": "text/plain"}, b"upstream connect error or disconnect/reset before headers"
        audience = backend.get("jwt_audience", backend["address"])
        if audience != fn["uri"]:  # Cloud Run accepts its own URL (or a configured custom audience) only
            return 401, {"Content-Type": "text/html; charset=UTF-8"}, b"<h1>Error: Unauthorized</h1>Your client " \
                b"does not have permission to the requested URL."
        if f"serviceAccount:{config['account']}" not in fn["invokers"]:
            return 403, {"Content-Type": "text/html; charset=UTF-8"}, b"<h1>Error: Forbidden</h1>"
        return self.call_function(fn_name, fn)

    def call_function(self, name: str, fn: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        # Cloud Run gives the function credentials for Firestore; here an address where nothing listens stands in
        # (the calls `check` makes are answered before any document is read).
        os.environ.update({**fn["env"], **fn["secret_env"], "K_SERVICE": fn["service"],
                           "QORCH_STORE_TIMEOUT_SECONDS": "1", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9"})
        sys.path.insert(0, str(ROOT))
        import functions_framework

        app = functions_framework.create_app(target=name, source=str(ROOT / "main.py"), signature_type="http")
        headers = {k: v for k, v in self.headers.items() if k != "authorization"}
        if "authorization" in self.headers:  # the gateway's own ID token takes Authorization
            headers["x-forwarded-authorization"] = self.headers["authorization"]
        headers["authorization"] = "Bearer eyJhbGciOiJSUzI1NiJ9.gateway-id-token.sig"
        with contextlib.redirect_stdout(io.StringIO()):  # the function's log lines
            response = app.test_client().open(self.url.path, method=self.r["method"], headers=headers,
                                              query_string=self.url.query, data=self.r["data"])
        return response.status_code, dict(response.headers), response.get_data()


# ---- main ----------------------------------------------------------------------------------------------------------


def run(tool: str, argv: list[str], state: dict[str, Any], stdin: bytes) -> tuple[int, str, str, dict[str, Any]]:
    record: dict[str, Any] = {}
    if tool == "gcloud":
        path, args, flags = parse(argv)
        command = Gcloud(state, path, args, flags, stdin)
        result = command.run()
        out = result if isinstance(result, RawOutput) else render(result, flags) if result is not None else ""
        return 0, out, "\n".join(command.err) + ("\n" if command.err else ""), record
    request = parse_curl(argv)
    status, headers, body = Http(state, request).respond()
    record.update(method=request["method"], url=request["url"], headers=request["headers"], status=status)
    if request["dump"]:
        lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
        Path(request["dump"]).write_text("\r\n".join(lines) + "\r\n\r\n")
    out = ""
    if request["output"]:
        Path(request["output"]).write_bytes(body)
    else:
        out = body.decode()
    if request["write"]:
        out += request["write"].replace("%{http_code}", f"{status:03d}")
    return 0, out, "", record


def main() -> int:
    tool, argv = sys.argv[1], sys.argv[2:]
    stdin = sys.stdin.buffer.read() if tool == "gcloud" and "--data-file=-" in argv else b""
    DIR.mkdir(parents=True, exist_ok=True)
    with open(DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else initial_state()
        try:
            code, out, err, record = run(tool, argv, state, stdin)
        except Failure as failure:
            code, out, err, record = failure.code, "", str(failure) + "\n", {}
        STATE_FILE.write_text(json.dumps(state, indent=1))
        with LOG_FILE.open("a") as log:
            log.write(json.dumps({"tool": tool, "argv": argv, "rc": code, "stderr": err[-2000:], **record}) + "\n")
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())

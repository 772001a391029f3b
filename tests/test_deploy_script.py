"""`infra/deploy.sh all` from an empty Google Cloud project, without a cloud: against the stand-in `gcloud` and
`curl` of tests/fake_gcloud (which answer like the real tools, refuse what the real ones refuse, record every call,
and inject the documented transient failures), on a PATH that holds only tools every platform has (a BSD-style
mktemp that refuses GNU options, no sha256sum). The run must complete, re-run cleanly, and do things in the order
a first deployment needs. docs/deploy.md lists what this proves and what only a real project can."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_gcloud import fake
from tools import gendeploy

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "qorch-fake"
REGION = "europe-west1"
ORIGIN = "https://app.example.com"
SECRET_VALUES = {"STRIPE_API_KEY": "sk_test_fake", "STRIPE_WEBHOOK_SECRET": "whsec_fake",
                 "QORCH_S3_ACCESS_KEY_ID": "AKIAFAKE", "QORCH_S3_SECRET_ACCESS_KEY": "fake-s3-secret"}
# The documented transient failures, each injected once.
INJECT = {"iam_not_exist": 2, "index_contention": [2, 3], "eventarc_not_ready": 1,
          "field_op_running": ["idempotency/expires_at"]}
# What the scripts may find on PATH: tools every platform has (mktemp is wrapped to refuse GNU-only options).
TOOLS = ("bash", "sed", "grep", "sort", "tr", "cat", "rm", "wc", "touch", "sleep", "dirname")
BSD_MKTEMP = """#!/bin/sh
# mktemp as BSD/macOS has it: [-d] TEMPLATE ending in XXXXXX; GNU's long options (--suffix, --tmpdir) do not exist.
[ "$1" = "-d" ] && { dir=-d; shift; }
case "$1" in -*|"") echo "mktemp: illegal option -- ${1#-}" >&2; echo "usage: mktemp [-d] template" >&2; exit 1;; esac
case "$1" in *XXXXXX) ;; *) echo "mktemp: template must end in XXXXXX" >&2; exit 1;; esac
[ $# -eq 1 ] || { echo "usage: mktemp [-d] template" >&2; exit 1; }
exec REAL_MKTEMP $dir "$1"
"""


class Cloud:
    """One fake project: its state and call log, and a PATH with the stand-ins."""

    def __init__(self, base: Path, inject: dict[str, Any] | None = None) -> None:
        self.dir, self.bin, self.tmp = base / "cloud", base / "bin", base / "tmp"
        for d in (self.dir, self.bin, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        for tool in ("gcloud", "curl"):
            wrapper = self.bin / tool
            script = ROOT / "tests" / "fake_gcloud" / "fake.py"
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" {tool} "$@"\n')
            wrapper.chmod(0o755)
        for tool in TOOLS:
            (self.bin / tool).symlink_to(shutil.which(tool))
        (self.bin / "python3").symlink_to(os.path.realpath(sys.executable))  # an interpreter, not a version shim
        mktemp = self.bin / "mktemp"
        mktemp.write_text(BSD_MKTEMP.replace("REAL_MKTEMP", shutil.which("mktemp")))
        mktemp.chmod(0o755)
        state = fake.initial_state(PROJECT)
        state["inject"].update(inject or {})
        self.write_state(state)

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": str(self.bin), "HOME": str(self.tmp), "TMPDIR": str(self.tmp), "LANG": "C",
                "FAKE_GCLOUD_DIR": str(self.dir), "PROJECT": PROJECT, "REGION": REGION, "PYTHON": sys.executable,
                "RETRY_SECONDS": "0", "QORCH_CORS_ORIGINS": ORIGIN, "QORCH_S3_BUCKET": "qorch-artifacts", **extra}

    def run(self, *args: str, secrets: bool = True, **extra: str) -> Run:
        before = len(self.calls())
        env = self.env(**({**SECRET_VALUES, **extra} if secrets else extra))
        done = subprocess.run([str(self.bin / "bash"), str(ROOT / "infra" / "deploy.sh"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        return Run(done.returncode, done.stdout, done.stderr, self.calls()[before:])

    def calls(self) -> list[dict[str, Any]]:
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "state.json").read_text())

    def write_state(self, state: dict[str, Any]) -> None:
        (self.dir / "state.json").write_text(json.dumps(state))

    def copy(self, base: Path) -> Cloud:
        twin = Cloud(base)
        twin.write_state(self.state())
        return twin


class Run:
    def __init__(self, rc: int, stdout: str, stderr: str, calls: list[dict[str, Any]]) -> None:
        self.rc, self.stdout, self.stderr, self.calls = rc, stdout, stderr, calls

    def gcloud(self, *path: str, ok: bool | None = None) -> list[tuple[int, dict[str, Any]]]:
        """(position, call) of the gcloud calls whose command starts with `path`."""
        return [(i, c) for i, c in enumerate(self.calls) if c["tool"] == "gcloud" and words(c)[:len(path)] ==
                list(path) and (ok is None or (c["rc"] == 0) == ok)]

    def http(self, host: str, method: str | None = None) -> list[tuple[int, dict[str, Any]]]:
        return [(i, c) for i, c in enumerate(self.calls) if c["tool"] == "curl" and host in c["url"] and
                (method is None or c["method"] == method)]

    def failed(self) -> list[dict[str, Any]]:
        """Calls that failed; `check`'s calls through the gateway are not among them (a 401 is what it expects)."""
        return [c for c in self.calls if (c["rc"] != 0 or c.get("status", 200) >= 400) and
                ".gateway.dev" not in c.get("url", "")]


def words(call: dict[str, Any]) -> list[str]:
    return [a for a in call["argv"] if not a.startswith("--")]


def flag(call: dict[str, Any], name: str) -> str | None:
    return next((a.split("=", 1)[1] if "=" in a else "" for a in call["argv"] if a.split("=", 1)[0] == f"--{name}"),
                None)


def email(account: str) -> str:
    return f"{account}@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A first deployment from an empty project, then the same command again."""
    cloud = Cloud(tmp_path_factory.mktemp("deploy"), INJECT)
    origins = "https://App.example.com:443, http://localhost:5173"  # check sends the first as a browser would
    first = cloud.run("all", QORCH_CORS_ORIGINS=origins)
    assert first.rc == 0, first.stderr[-6000:]
    second = cloud.run("all", QORCH_CORS_ORIGINS=origins)
    assert second.rc == 0, second.stderr[-6000:]
    return cloud, first, second


# ---- it goes through, and again --------------------------------------------------------------------------------


def test_a_first_deployment_goes_through_in_one_run_despite_the_documented_transient_failures(deployed):
    _, first, _ = deployed
    created = {words(c)[3] for _, c in first.gcloud("iam", "service-accounts", "create", ok=True)}
    assert len(created) == 7  # 4 runtime identities, gateway, trigger, build
    kinds: dict[str, list[dict[str, Any]]] = {"propagation": [], "contention": [], "eventarc": [], "field": [],
                                              "probe": []}
    for call in first.failed():
        if re.search(r"Service account \S+ does not exist", call["stderr"]):
            kinds["propagation"].append(call)
        elif "too much contention" in call["stderr"]:
            kinds["contention"].append(call)
        elif "Eventarc Service Agent" in call["stderr"]:
            kinds["eventarc"].append(call)
        elif call.get("status") == 400 and "/fields/" in call["url"]:
            kinds["field"].append(call)
        elif (call["tool"] == "gcloud" and {"describe", "access"} & set(words(call))) or call.get("method") == "GET":
            kinds["probe"].append(call)  # asking whether something exists yet
        else:
            raise AssertionError(f"an unexpected failure: {call}")
    assert len(kinds["propagation"]) == 2 * len(created), "each new account refused twice, then bound on a retry"
    assert len(kinds["contention"]) == 2 and len(kinds["eventarc"]) == 1 and len(kinds["field"]) == 1
    assert "check: GET /v1/state-machine 200" in first.stderr
    assert f"check: OPTIONS /v1/workflows 204 with CORS headers for {ORIGIN}" in first.stderr


def test_it_re_runs_cleanly(deployed):
    _, _, second = deployed
    # nothing new is created, no value, ruleset or field is rewritten; only index creates meet "already exists"
    assert [c for c in second.failed() if "already exists" not in c["stderr"]] == []
    assert {tuple(words(c)[:4]) for c in second.failed()} == {("firestore", "indexes", "composite", "create")}
    mutating = [c["argv"] for c in second.calls if c["tool"] == "gcloud" and c["rc"] == 0 and set(words(c)) & {
        "create", "add", "add-iam-policy-binding"} and "binding" not in " ".join(words(c))]
    assert mutating == [], mutating
    assert second.gcloud("secrets", "versions", "add") == []
    assert [c for _, c in second.http("firestore.googleapis.com", "PATCH")] == []
    assert [c for _, c in second.http("firebaserules.googleapis.com", "POST")] == []
    assert second.gcloud("api-gateway", "gateways", "update") == []
    assert len(second.gcloud("functions", "deploy", ok=True)) == len(gendeploy.functions())  # the code, again
    assert "check: GET /v1/state-machine 200" in second.stderr


# ---- the order a first deployment needs ------------------------------------------------------------------------


def test_accounts_exist_before_their_grants(deployed):
    _, first, _ = deployed
    created = {email(words(c)[3]): i for i, c in first.gcloud("iam", "service-accounts", "create", ok=True)}
    bindings = [(i, c) for i, c in enumerate(first.calls) if c["tool"] == "gcloud" and flag(c, "member")]
    bindings += [(i, c) for i, c in first.gcloud("api-gateway", "api-configs", "create")]
    assert len(bindings) > 20
    for i, call in bindings:
        member = flag(call, "member") or f"serviceAccount:{flag(call, 'backend-auth-service-account')}"
        account = member.removeprefix("serviceAccount:")
        assert account in created and created[account] < i, (call["argv"], "granted before the account exists")
    for account, at in created.items():
        tries = [c for i, c in bindings if i > at and account in " ".join(c["argv"])]
        assert [c["rc"] for c in tries[:3]] == [1, 1, 0], (account, "refused twice while propagating, then bound")


def test_a_secret_has_a_version_before_any_function_that_mounts_it(deployed):
    _, first, _ = deployed
    versions = {words(c)[3]: i for i, c in first.gcloud("secrets", "versions", "add", ok=True)}
    assert set(versions) == set(gendeploy.SECRETS.values())
    mounting = [(i, c) for i, c in first.gcloud("functions", "deploy") if flag(c, "set-secrets")]
    assert len(mounting) >= 7
    for i, call in mounting:
        for ref in flag(call, "set-secrets").split(","):
            secret = ref.split("=", 1)[1].split(":", 1)[0]
            assert versions[secret] < i, (call["argv"], secret)


def test_the_topic_exists_before_its_trigger(deployed):
    _, first, _ = deployed
    topics = {words(c)[3]: i for i, c in first.gcloud("pubsub", "topics", "create", ok=True)}
    triggered = [(i, c) for i, c in first.gcloud("functions", "deploy") if flag(c, "trigger-topic")]
    assert triggered and all(topics[flag(c, "trigger-topic")] < i for i, c in triggered)
    jobs = first.gcloud("scheduler", "jobs", "create", ok=True)
    assert jobs and all(topics[flag(c, "topic")] < i for i, c in jobs)


def test_every_build_names_the_build_service_account_which_has_its_roles_first(deployed):
    _, first, _ = deployed
    build = f"projects/{PROJECT}/serviceAccounts/{email('qorch-build')}"
    deploys = first.gcloud("functions", "deploy")
    assert deploys and all(flag(c, "build-service-account") == build for _, c in deploys)
    granted = [i for i, c in first.gcloud("projects", "add-iam-policy-binding", ok=True)
               if flag(c, "member") == f"serviceAccount:{email('qorch-build')}"]
    assert len(granted) == 3 and max(granted) < deploys[0][0]
    assert all(flag(c, "serve-all-traffic-latest-revision") == "" for _, c in deploys)


def test_the_gateways_token_audience_is_each_functions_cloud_run_url(deployed):
    """jwt_audience = the Cloud Run service URL (which Cloud Run accepts), and `check` got a 2xx through it."""
    cloud, first, _ = deployed
    state = cloud.state()
    spec = state["configs"][state["gateway"]["apiConfig"].rsplit("/", 1)[-1]]["spec"]
    uris = {name: fn["uri"] for name, fn in state["functions"].items()}
    backends = [(op["operationId"], op["x-google-backend"]) for ops in spec["paths"].values() for op in ops.values()]
    assert len(backends) > 30
    for operation, backend in backends:
        name = "cors_preflight" if operation.startswith("preflight_") else operation
        assert backend["jwt_audience"] == backend["address"] == uris[name], operation
        assert ".run.app" in backend["jwt_audience"] and "cloudfunctions.net" not in backend["jwt_audience"]
    through = first.http(".gateway.dev")
    assert [(c["method"], urlpath(c["url"]), c["status"]) for _, c in through] == [
        ("GET", "/v1/state-machine", 200), ("GET", "/v1/account", 401), ("OPTIONS", "/v1/workflows", 204)]


def urlpath(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_every_path_has_an_options_operation_routed_to_cors_preflight(deployed):
    cloud, _, _ = deployed
    state = cloud.state()
    spec = state["configs"][state["gateway"]["apiConfig"].rsplit("/", 1)[-1]]["spec"]
    assert set(spec["paths"]) == {r.path for r in gendeploy.ROUTES}
    for ops in spec["paths"].values():
        assert ops["options"]["x-google-backend"]["address"] == state["functions"]["cors_preflight"]["uri"]


def test_the_override_and_the_ttl_of_a_field_go_in_one_update(deployed):
    cloud, first, _ = deployed
    overrides = json.loads((ROOT / "infra" / "firestore.indexes.json").read_text())["fieldOverrides"]
    patches = [c for _, c in first.http("firestore.googleapis.com", "PATCH") if c["status"] == 200]
    by_field = {}
    for call in patches:
        field = re.search(r"collectionGroups/([^/]+)/fields/([^?]+)\?updateMask=(.+)$", call["url"])
        by_field.setdefault(f"{field.group(1)}/{field.group(2)}", []).append(field.group(3))
    assert set(by_field) == {f"{o['collectionGroup']}/{o['fieldPath']}" for o in overrides}
    for o in overrides:
        assert by_field[f"{o['collectionGroup']}/{o['fieldPath']}"] == [
            "indexConfig,ttlConfig" if o.get("ttl") else "indexConfig"]
    state = cloud.state()
    assert {k for k, f in state["fields"].items() if "ttlConfig" in f} == {
        f"{o['collectionGroup']}/{o['fieldPath']}" for o in overrides if o.get("ttl")}


def test_the_rules_upload_names_its_quota_project(deployed):
    cloud, first, _ = deployed
    calls = [c for _, c in first.http("firebaserules.googleapis.com")]
    assert calls and all(f"X-Goog-User-Project: {PROJECT}" in c["headers"] for c in calls)
    assert cloud.state()["release"]["rulesetName"] == cloud.state()["rulesets"][-1]["name"]


# ---- identities (issue 9: each function reads only the secrets its code reads) ---------------------------------


def test_each_function_runs_as_an_identity_that_may_read_exactly_its_secrets(deployed):
    cloud, _, _ = deployed
    state = cloud.state()
    readers = {secret: {m.removeprefix("serviceAccount:") for m in s["accessors"]}
               for secret, s in state["secrets"].items()}
    for fn in gendeploy.functions():
        deployed_fn = state["functions"][fn.name]
        assert deployed_fn["account"] == email(fn.account)
        may_read = {gendeploy.SECRETS[env] for env in gendeploy.SECRETS
                    if deployed_fn["account"] in readers[gendeploy.SECRETS[env]]}
        assert may_read == {gendeploy.SECRETS[env] for env in fn.secrets}, fn.name
    stripe = {gendeploy.SECRETS["STRIPE_API_KEY"], gendeploy.SECRETS["STRIPE_WEBHOOK_SECRET"]}
    billing = {email(fn.account) for fn in gendeploy.functions() if set(fn.secrets) & {"STRIPE_API_KEY",
                                                                                       "STRIPE_WEBHOOK_SECRET"}}
    assert set().union(*(readers[s] for s in stripe)) == billing
    assert email("qorch-functions") not in set().union(*readers.values())


def test_an_upgrade_takes_secret_access_from_identities_that_no_longer_read_a_secret(tmp_path):
    """Earlier releases ran every function as qorch-functions, which could read every secret."""
    cloud = Cloud(tmp_path)
    assert cloud.run("apis", "accounts", "secrets").rc == 0
    state = cloud.state()
    for secret in state["secrets"].values():
        secret["accessors"].append(f"serviceAccount:{email('qorch-functions')}")
    cloud.write_state(state)
    again = cloud.run("secrets")
    assert again.rc == 0, again.stderr
    assert len(again.gcloud("secrets", "remove-iam-policy-binding", ok=True)) == len(gendeploy.SECRETS)
    assert all(f"serviceAccount:{email('qorch-functions')}" not in s["accessors"]
               for s in cloud.state()["secrets"].values())


# ---- stops early, with the fix, when it cannot succeed ---------------------------------------------------------


def test_secrets_without_a_value_stop_the_run_before_any_function(tmp_path):
    cloud = Cloud(tmp_path)
    run = cloud.run("all", secrets=False)
    assert run.rc != 0
    assert run.gcloud("functions", "deploy") == []
    for secret in gendeploy.SECRETS.values():
        assert f"{secret}: set" in run.stderr and f"gcloud secrets versions add {secret}" in run.stderr


def test_an_unknown_step_is_refused(tmp_path):
    run = Cloud(tmp_path).run("everything")
    assert run.rc != 0 and "unknown step 'everything'" in run.stderr and run.calls == []


# ---- rollback ----------------------------------------------------------------------------------------------------


def test_a_function_rollback_serves_the_previous_revision_until_the_next_deploy(deployed, tmp_path):
    cloud = deployed[0].copy(tmp_path)
    first_revision = cloud.state()["functions"]["create_workflow"]["revisions"][0]["name"]
    back = cloud.run("rollback", "create_workflow")
    assert back.rc == 0, back.stderr
    (_, call), = back.gcloud("run", "services", "update-traffic", ok=True)
    assert flag(call, "to-revisions") == f"{first_revision}=100"
    assert cloud.state()["functions"]["create_workflow"]["traffic"] == first_revision
    forward = cloud.run("functions", "create_workflow")
    assert forward.rc == 0, forward.stderr
    assert cloud.state()["functions"]["create_workflow"]["traffic"] is None, "the new revision serves again"
    assert "not serving 100% of traffic" not in forward.stderr


def test_a_secret_rollback_makes_the_earlier_value_the_newest_version_and_redeploys_its_readers(deployed, tmp_path):
    cloud = deployed[0].copy(tmp_path)
    bad = cloud.run("secrets", STRIPE_API_KEY="sk_live_wrong")
    assert bad.rc == 0 and cloud.state()["secrets"]["qorch-stripe-api-key"]["versions"][-1]["value"] == "sk_live_wrong"
    back = cloud.run("rollback-secret", "qorch-stripe-api-key", secrets=False)
    assert back.rc == 0, back.stderr
    versions = cloud.state()["secrets"]["qorch-stripe-api-key"]["versions"]
    assert versions[-1]["value"] == SECRET_VALUES["STRIPE_API_KEY"] and versions[-1]["state"] == "ENABLED"
    assert all(v["state"] == "ENABLED" for v in versions), "nothing disabled: `latest` always has a value"
    added = back.gcloud("secrets", "versions", "add", ok=True)
    redeployed = {words(c)[2]: i for i, c in back.gcloud("functions", "deploy", ok=True)}
    assert set(redeployed) == {"create_checkout_session", "create_portal_session"}
    assert all(added[0][0] < i for i in redeployed.values())


# ---- portability ---------------------------------------------------------------------------------------------------


def test_the_scripts_use_no_gnu_only_tools_or_options():
    """The runs above had no sha256sum and a BSD mktemp on PATH; this catches the rest by reading."""
    gnu_only = [r"mktemp\s+--", r"\bsha256sum\b", r"--fail-with-body", r"\breadlink\s+-f", r"\bsed\s+-i",
                r"\bdate\s+-d", r"\bstat\s+-c", r"\bgrep\s+-P", r"\btimeout\s", r"\bxargs\s+-r"]
    for script in ("infra/deploy.sh", "infra/deploy-plan.sh"):
        text = (ROOT / script).read_text()
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for pattern in gnu_only:
            assert not re.search(pattern, code), (script, pattern)


def test_the_stand_in_refuses_what_the_real_tools_refuse(tmp_path):
    """The stand-in is only worth the run if it says no like the real tools: unknown flags, a trigger before its
    topic, a secret with no value, a build as the default account, a rules call without a quota project."""
    cloud = Cloud(tmp_path)
    env = {**os.environ, **cloud.env()}

    def gcloud(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(cloud.bin / "gcloud"), f"--project={PROJECT}", "--quiet", *args], env=env,
                              capture_output=True, text=True)

    assert "unrecognized arguments: --suffix" in gcloud("secrets", "create", "x", "--suffix=.yaml").stderr
    assert "has not been used" in gcloud("secrets", "create", "x").stderr
    gcloud("services", "enable", "secretmanager.googleapis.com", "iam.googleapis.com", "pubsub.googleapis.com",
           "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
           "artifactregistry.googleapis.com", "eventarc.googleapis.com")
    assert gcloud("iam", "service-accounts", "create", "qorch-functions").returncode == 0
    deploy = ["functions", "deploy", "cleanup", "--gen2", f"--region={REGION}", "--runtime=python312", "--source=.",
              "--entry-point=cleanup", f"--service-account={email('qorch-functions')}"]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert "missing permission on the build service account" in gcloud(*deploy, "--trigger-http").stderr
        gcloud("iam", "service-accounts", "create", "qorch-build")
        for role in fake.BUILD_ROLES:
            gcloud("projects", "add-iam-policy-binding", PROJECT, f"--member=serviceAccount:{email('qorch-build')}",
                   f"--role={role}")
        built = f"--build-service-account=projects/{PROJECT}/serviceAccounts/{email('qorch-build')}"
        topic = gcloud(*deploy, built, "--trigger-topic=qorch-cleanup",
                       f"--trigger-service-account={email('qorch-functions')}")
        assert "does not exist" in topic.stderr and "topics/qorch-cleanup" in topic.stderr
        gcloud("secrets", "create", "qorch-s3-access-key-id")
        unset = gcloud(*deploy, built, "--trigger-http", "--set-secrets=K=qorch-s3-access-key-id:latest")
        assert "versions/latest was not found" in unset.stderr
    finally:
        os.chdir(cwd)
    rules = subprocess.run([str(cloud.bin / "curl"), "-sS", "-X", "POST", "-H", f"Authorization: Bearer {fake.TOKEN}",
                            f"https://firebaserules.googleapis.com/v1/projects/{PROJECT}/rulesets", "--data", "{}"],
                           env=env, capture_output=True, text=True)
    assert "requires a quota project" in rules.stdout
    old_curl = subprocess.run([str(cloud.bin / "curl"), "--fail-with-body", "https://example.com"], env=env,
                              capture_output=True, text=True)
    assert old_curl.returncode == 2


def test_the_stand_in_knows_only_commands_and_flags_the_installed_gcloud_has():
    """Its command table is a subset of the real CLI's own (the SDK's static completion tree, the same tree `gcloud
    ... --help` is built from), so deploy.sh cannot pass the test with a flag that gcloud does not have."""
    gcloud = shutil.which("gcloud")
    assert gcloud, "the Google Cloud SDK is a prerequisite of make test (README: Prerequisites)"
    tree_file = Path(os.path.realpath(gcloud)).parent.parent / "data" / "cli" / "gcloud_completions.py"
    assert tree_file.is_file(), f"no static completion tree at {tree_file}: reinstall the Google Cloud SDK"
    namespace: dict[str, Any] = {}
    exec(compile(tree_file.read_text(), str(tree_file), "exec"), namespace)  # a data file: one dict literal
    tree = namespace["STATIC_COMPLETION_CLI_TREE"]
    for path, flags in fake.COMMANDS.items():
        node = tree
        for word in path:
            assert word in node["commands"], f"gcloud has no command {' '.join(path)}"
            node = node["commands"][word]
        for name in flags:
            known = node["flags"]
            assert {f"--{name}", f"--{name.removeprefix('no-')}"} & set(known), f"gcloud {' '.join(path)} --{name}"
    for name in fake.GLOBAL:
        assert f"--{name}" in tree["flags"], name

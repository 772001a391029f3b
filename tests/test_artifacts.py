"""Artifacts over a real S3 endpoint (moto in server mode): presigned upload and download with an ordinary HTTP
client, the complete step's checks, names, limits, tenancy, attaching to transitions; every refusal writes
nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from shared.domain.state_machine import Role
from tests.agents import Agent, get, get_status, put
from tests.helpers import assert_refused, cold_instance, snapshot_all

pytestmark = pytest.mark.usefixtures("s3")
ROOT = Path(__file__).resolve().parent.parent
Q = Role.Q_ASSISTANT


def declare(api, key: str, workflow_id: str, data: bytes = b"# plan\n", **fields):
    body = {"name": "plan.md", "content_type": "text/markdown", "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), **fields}
    return api.post(f"/v1/workflows/{workflow_id}/artifacts", body, key)



def test_upload_complete_download_round_trip(api, tenant):
    wf = api.create(tenant)
    data = "# Plan\n\nbuild the shop ✓\n".encode()
    r = declare(api, tenant.agents[Q], wf["id"], data, name="plan ✓.md")
    assert r.status == 201, r.body
    artifact, upload = r.body["artifact"], r.body["upload"]
    assert artifact["status"] == "PENDING_UPLOAD" and artifact["name"] == "plan ✓.md"
    assert artifact["size_bytes"] == len(data) and artifact["sha256"] == hashlib.sha256(data).hexdigest()
    assert r.headers["Location"] == f"/v1/workflows/{wf['id']}/artifacts/{artifact['id']}"
    assert upload["method"] == "PUT" and upload["headers"]["Content-Type"] == "text/markdown"
    # the key is the account's and the workflow's, built from ids only (never from the name)
    key = urllib.parse.urlparse(upload["url"]).path
    assert key.endswith(f"/accounts/{tenant.account_id}/workflows/{wf['id']}/artifacts/{artifact['id']}")
    assert "X-Amz-Signature" in upload["url"] and "X-Amz-Expires=900" in upload["url"]

    got = api.get(f"/v1/workflows/{wf['id']}/artifacts/{artifact['id']}", tenant.owner)
    assert got.body["download"] is None  # nothing to download yet

    assert put(upload, data) == 200
    done = api.post(f"/v1/workflows/{wf['id']}/artifacts/{artifact['id']}/complete", None, tenant.agents[Q])
    assert done.status == 200, done.body
    assert done.body["artifact"]["status"] == "AVAILABLE" and done.body["artifact"]["completed_at"]

    got = api.get(f"/v1/workflows/{wf['id']}/artifacts/{artifact['id']}", tenant.agents[Role.TESTER])
    assert got.status == 200 and got.body["download"]["method"] == "GET"
    assert get(got.body["download"]["url"]) == data

    # completing again changes nothing and answers the same
    before = snapshot_all(api.store)
    again = api.post(f"/v1/workflows/{wf['id']}/artifacts/{artifact['id']}/complete", None, tenant.owner)
    assert again.status == 200 and again.body["artifact"] == done.body["artifact"]
    assert snapshot_all(api.store) == before


def test_complete_before_the_upload_is_upload_incomplete(api, tenant):
    wf = api.create(tenant)
    created = declare(api, tenant.owner, wf["id"]).body
    path = f"/v1/workflows/{wf['id']}/artifacts/{created['artifact']['id']}/complete"
    assert_refused(api, lambda: api.post(path, None, tenant.owner), 409, "upload_incomplete")


@pytest.mark.parametrize("stored", [b"# plaN\n", b"# plan\n and more"], ids=["same size", "other size"])
def test_other_bytes_than_declared_are_checksum_mismatch(api, tenant, stored):
    wf = api.create(tenant)
    created = declare(api, tenant.owner, wf["id"], b"# plan\n").body
    upload = dict(created["upload"], headers={k: v for k, v in created["upload"]["headers"].items()
                                              if k.lower() == "content-type"})  # moto does not check the rest
    put(upload, stored)
    path = f"/v1/workflows/{wf['id']}/artifacts/{created['artifact']['id']}/complete"
    assert_refused(api, lambda: api.post(path, None, tenant.owner), 422, "checksum_mismatch")
    got = api.get(f"/v1/workflows/{wf['id']}/artifacts/{created['artifact']['id']}", tenant.owner).body
    assert got["artifact"]["status"] == "PENDING_UPLOAD" and got["download"] is None

    put(created["upload"], b"# plan\n")  # uploading the right bytes again fixes it
    assert api.post(path, None, tenant.owner).status == 200


def test_an_artifact_above_the_plans_limit_is_payload_too_large(api, tenant):
    wf = api.create(tenant)
    r = assert_refused(api, lambda: declare(api, tenant.owner, wf["id"], size_bytes=100 * 1024 * 1024 + 1), 413,
                "payload_too_large")
    assert r.body["max_artifact_bytes"] == 100 * 1024 * 1024
    assert declare(api, tenant.owner, wf["id"], size_bytes=100 * 1024 * 1024).status == 201


def test_the_limit_is_the_accounts_plans(api):
    pro = api.tenant("Big", plan="pro")  # 1 GiB in shared/domain/plans.json
    wf = api.create(pro)
    assert declare(api, pro.owner, wf["id"], size_bytes=1024 ** 3).status == 201
    assert_refused(api, lambda: declare(api, pro.owner, wf["id"], size_bytes=1024 ** 3 + 1), 413, "payload_too_large")


@pytest.mark.parametrize(("given", "kept"), [("../../etc/passwd", "passwd"), ("C:\\Users\\me\\notes.txt", "notes.txt"),
                                             ("  report\u202e.md\x00 ", "report.md"), (".env", ".env")])
def test_names_are_sanitised(api, tenant, given, kept):
    wf = api.create(tenant)
    r = declare(api, tenant.owner, wf["id"], name=given)
    assert r.status == 201, r.body
    assert r.body["artifact"]["name"] == kept


@pytest.mark.parametrize("name", ["..", "a/..", "dir/", "\x01", "x" * 256, ""])
def test_names_that_are_no_file_name_are_assert_refused(api, tenant, name):
    wf = api.create(tenant)
    assert_refused(api, lambda: declare(api, tenant.owner, wf["id"], name=name), 422, "validation_error")


@pytest.mark.parametrize("fields", [{"sha256": "abc"}, {"size_bytes": -1}, {"size_bytes": "7"},
                                    {"content_type": "not a type"}, {"content_type": "text/plain\r\nX: y"}])
def test_invalid_declarations_are_assert_refused(api, tenant, fields):
    wf = api.create(tenant)
    assert_refused(api, lambda: declare(api, tenant.owner, wf["id"], **fields), 422, "validation_error")


def test_only_the_owner_or_the_current_role_adds_artifacts(api, tenant):
    wf = api.create(tenant)
    assert_refused(api, lambda: declare(api, tenant.agents[Role.TESTER], wf["id"]), 403, "forbidden")
    assert declare(api, tenant.agents[Q], wf["id"]).status == 201


def test_artifacts_are_invisible_across_accounts(api, tenant, other_tenant):
    wf = api.create(tenant)
    artifact = Agent(api, tenant.agents[Q], "q").upload(wf["id"], "plan.md", b"mine")
    base = f"/v1/workflows/{wf['id']}/artifacts"
    for call in (lambda: api.get(f"{base}/{artifact['id']}", other_tenant.owner),
                 lambda: api.post(f"{base}/{artifact['id']}/complete", None, other_tenant.owner),
                 lambda: api.get(base, other_tenant.owner),
                 lambda: declare(api, other_tenant.owner, wf["id"])):
        assert_refused(api, call, 404, "not_found")
    # a URL signed for one account's object names that object only: the other account's prefix is not reachable
    theirs = api.create(other_tenant)
    url = api.get(f"{base}/{artifact['id']}", tenant.owner).body["download"]["url"]
    tampered = url.replace(f"accounts/{tenant.account_id}/workflows/{wf['id']}",
                           f"accounts/{other_tenant.account_id}/workflows/{theirs['id']}")
    assert get_status(tampered) in (403, 404)


def test_list_artifacts_newest_first_with_pages(api, tenant):
    wf = api.create(tenant)
    ids = [declare(api, tenant.owner, wf["id"], name=f"{i}.md").body["artifact"]["id"] for i in range(5)]
    seen, token = [], None
    while True:
        r = api.get(f"/v1/workflows/{wf['id']}/artifacts", tenant.agents[Role.DEVOPS],
                    query={"limit": 2, **({"page_token": token} if token else {})})
        assert r.status == 200, r.body
        seen += [a["id"] for a in r.body["artifacts"]]
        token = r.body["next_page_token"]
        if not token:
            break
    assert seen == ids[::-1]
    assert api.get(f"/v1/workflows/{api.create(tenant)['id']}/artifacts", tenant.owner).body["artifacts"] == []
    assert_refused(api, lambda: api.get("/v1/workflows/wf_nope/artifacts", tenant.owner), 404, "not_found")


# ---- attaching artifacts to transitions ---------------------------------------------------------------------------


def test_attached_artifacts_travel_with_the_handoff(api, tenant):
    wf = api.create(tenant)
    q = Agent(api, tenant.agents[Q], "q")
    q.claim(expect=200)
    notes = q.upload(wf["id"], "discovery.md", b"what they want")
    r = q.move(wf["id"], "PLANNING", artifacts=[notes["id"]])
    assert r.status == 200, r.body
    assert r.body["event"]["artifacts"] == [notes["id"]]
    plan = q.upload(wf["id"], "plan.md", b"the plan")
    cold_instance()
    api.store.rpcs.clear()
    r = q.move(wf["id"], "DESIGN", artifacts=[plan["id"]])
    assert r.status == 200, r.body
    assert api.store.rpcs == {"get": 1, "batch_get": 1, "commit": 1}  # artifacts are read in the same batch
    # the architect's hand-off carries everything the Q Assistant produced, in order
    architect = Agent(api, tenant.agents[Role.ARCHITECT], "arch")
    h = architect.claim(expect=200).body["handoff"]
    assert h["artifacts"] == [notes["id"], plan["id"]]
    assert architect.download(wf["id"], plan["id"]) == b"the plan"


def test_attaching_what_is_not_an_available_artifact_of_this_workflow_writes_nothing(api, tenant, other_tenant):
    wf, sibling = api.create(tenant), api.create(tenant)
    q = Agent(api, tenant.agents[Q], "q")
    pending = declare(api, q.key, wf["id"]).body["artifact"]["id"]
    elsewhere = q.upload(sibling["id"], "x.md", b"x")
    foreign_wf = api.create(other_tenant)
    foreign = Agent(api, other_tenant.agents[Q], "f").upload(foreign_wf["id"], "y.md", b"y")
    good = q.upload(wf["id"], "ok.md", b"ok")
    for ids in ([pending], [elsewhere["id"]], [foreign["id"]], ["art_" + "0" * 32], [good["id"], good["id"]],
                [good["id"], pending]):
        r = assert_refused(api, lambda ids=ids: q.move(wf["id"], "PLANNING", artifacts=ids), 422, "validation_error")
        assert any(e["field"].startswith("artifacts") for e in r.body["errors"]), r.body
    assert_refused(api, lambda: q.move(wf["id"], "PLANNING", artifacts=["../../x"]), 422, "validation_error")
    assert q.move(wf["id"], "PLANNING", artifacts=[good["id"]]).status == 200


# ---- cold start ----------------------------------------------------------------------------------------------------


def test_only_the_artifact_functions_import_boto3():
    """In a fresh interpreter: every other function module loads (and main serves them) without boto3; the artifact
    function modules load without it too, and only presigning or checking an object brings it in."""
    script = """
import json, sys, importlib
import main
from shared.http.routes import ROUTES
artifact_functions = {"create_artifact", "complete_artifact", "get_artifact", "list_artifacts"}
for route in ROUTES:
    if route.function not in artifact_functions:
        importlib.import_module("functions." + route.function)
import shared.services.workflows, shared.services.handoffs
before = "boto3" in sys.modules
for name in sorted(artifact_functions):
    importlib.import_module("functions." + name)
on_import = "boto3" in sys.modules
from shared.adapters.objectstore import ObjectStore, ObjectStoreConfig
ObjectStore(ObjectStoreConfig(bucket="b", access_key_id="k", secret_access_key="s")).presign_get(
    "k", content_type="text/plain", content_disposition="attachment", expires_in=60)
print(json.dumps([before, on_import, "boto3" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "GOOGLE_CLOUD_PROJECT": "cold"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False, True]

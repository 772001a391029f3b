"""Idempotency-Key on the POSTs without a JSON body: `complete_artifact` and `create_portal_session` honour it (a
repeat replays the first answer, a reuse elsewhere is 422, a malformed key is 422), and the Stripe webhook refuses it
(its deliveries are idempotent by event id). Every refusal writes nothing."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared.domain.state_machine import Role
from tests import billing_support
from tests.agents import put
from tests.billing_support import customer_tenant, event, sign, subscription, uid
from tests.helpers import assert_refused, snapshot_all

billing_env = billing_support.billing_env
Q = Role.Q_ASSISTANT
PORTAL = "/v1/billing/portal-session"


def _declared(api, tenant, data: bytes = b"# plan\n") -> tuple[dict, str]:
    wf = api.create(tenant)
    r = api.post(f"/v1/workflows/{wf['id']}/artifacts",
                 {"name": "plan.md", "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
                 tenant.agents[Q])
    assert r.status == 201, r.body
    return r.body, f"/v1/workflows/{wf['id']}/artifacts/{r.body['artifact']['id']}/complete"


@pytest.mark.usefixtures("s3")
def test_complete_artifact_honours_the_key(api, tenant):
    created, path = _declared(api, tenant)
    key = {"Idempotency-Key": "complete-1"}
    # a refused complete (nothing uploaded yet) is not recorded: the same key works once the bytes are there
    assert_refused(api, lambda: api.post(path, None, tenant.owner, headers=key), 409, "upload_incomplete")
    put(created["upload"], b"# plan\n")
    first = api.post(path, None, tenant.owner, headers=key)
    assert first.status == 200 and first.body["artifact"]["status"] == "AVAILABLE"
    assert "Idempotent-Replayed" not in first.headers

    before = snapshot_all(api.store)
    again = api.post(path, None, tenant.owner, headers=key)
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.body == first.body and snapshot_all(api.store) == before

    _, other = _declared(api, tenant)  # the same key for another request
    r = assert_refused(api, lambda: api.post(other, None, tenant.owner, headers=key), 422, "idempotency_key_reused")
    assert r.body["detail"]


@pytest.mark.usefixtures("s3")
def test_complete_artifact_refuses_a_malformed_key(api, tenant):
    _, path = _declared(api, tenant)
    for bad in ("", "k" * 256):
        r = assert_refused(api, lambda bad=bad: api.post(path, None, tenant.owner, headers={"Idempotency-Key": bad}),
                           422, "validation_error")
        assert r.body["errors"][0]["field"] == "header:Idempotency-Key"


def test_the_portal_honours_the_key(api, billing_env):
    tenant = customer_tenant(api)
    customer = uid("cus")
    t = billing_support.now_s()
    sub = subscription(uid("sub"), customer, "active", billing_support.PRICE_PRO, t + 30 * 86_400,
                       account_id=tenant.account_id)
    assert billing_support.deliver(api, event("customer.subscription.updated", sub, t)).status == 200
    billing_env.reset()
    key = {"Idempotency-Key": "portal-1"}

    first = api.post(PORTAL, key=tenant.owner, headers=key)
    assert first.status == 200, first.body
    [call] = billing_env.calls_to("/v1/billing_portal/sessions")
    assert call.idempotency_key is not None and call.idempotency_key.startswith(f"qorch-portal-{tenant.account_id}-")

    before = snapshot_all(api.store)
    again = api.post(PORTAL, key=tenant.owner, headers=key)
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.body == first.body and snapshot_all(api.store) == before
    assert len(billing_env.calls_to("/v1/billing_portal/sessions")) == 1, "a replay does not ask Stripe again"

    r = assert_refused(api, lambda: api.post(PORTAL, key=tenant.owner, headers={"Idempotency-Key": "k" * 256}),
                       422, "validation_error")
    assert r.body["errors"][0]["field"] == "header:Idempotency-Key"
    assert len(billing_env.calls_to("/v1/billing_portal/sessions")) == 1

    # without a key nothing of ours is written (as before)
    assert api.post(PORTAL, key=tenant.owner).status == 200
    assert snapshot_all(api.store) == before


def test_the_webhook_refuses_the_key(api, billing_env, tenant):
    payload = json.dumps(event("customer.subscription.updated", subscription(
        uid("sub"), uid("cus"), "active", billing_support.PRICE_PRO, billing_support.now_s() + 86_400,
        account_id=tenant.account_id), billing_support.now_s()))

    def deliver_with_key():
        return api.request("POST", "/v1/stripe/webhook", data=payload, headers={
            "Stripe-Signature": sign(payload), "Content-Type": "application/json", "Idempotency-Key": "evt-1"})

    r = assert_refused(api, deliver_with_key, 422, "validation_error")
    assert r.body["errors"][0]["field"] == "header:Idempotency-Key" and "event id" in r.body["errors"][0]["message"]
    ok = api.request("POST", "/v1/stripe/webhook", data=payload,
                     headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"})
    assert ok.status == 200 and ok.body["outcome"] == "applied"

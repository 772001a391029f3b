"""Checkout and portal sessions (the real stripe library talking to a local HTTP server that records what it was
sent), GET /v1/account, and the entitlement and quota gate on POST /v1/workflows."""

from __future__ import annotations

import pytest

from shared.runtime import clock
from shared.runtime.config import config
from tests import billing_support
from tests.billing_support import (
    CANCEL_URL,
    PRICE_PRO,
    PRICE_STARTER,
    RETURN_URL,
    SUCCESS_URL,
    customer_tenant,
    deliver,
    event,
    now_s,
    stored_account,
    subscription,
    uid,
    unconfigure,
)
from tests.helpers import cold_instance, raw, ref, snapshot_all, together, used

billing_env = billing_support.billing_env  # fixture
CHECKOUT = "/v1/billing/checkout-session"
PORTAL = "/v1/billing/portal-session"


def subscribe(api, tenant, *, status: str = "active", price: str = PRICE_PRO) -> str:
    customer = stored_account(api, tenant.account_id).get("stripe_customer_id") or uid("cus")
    sub = uid("sub")
    t = now_s()
    r = deliver(api, event("customer.subscription.updated", subscription(
        sub, customer, status, price, t + 30 * 86_400, account_id=tenant.account_id), t))
    assert r.body["outcome"] == "applied", r.body
    return sub


def set_active_count(api, account_id: str, n: int) -> None:
    ref(api.store, api.store.account(account_id)).update({"active_workflows": n})


# ---- checkout ----------------------------------------------------------------------------------------------------


def test_checkout_sends_stripe_a_subscription_session_for_the_plans_price(api, billing_env):
    tenant = customer_tenant(api, "Acme Ltd")
    r = api.post(CHECKOUT, {"plan": "pro"}, tenant.owner)
    assert r.status == 200, r.body
    assert r.body["id"].startswith("cs_test_") and r.body["url"].startswith("https://checkout.stripe.com/")
    [customer_call] = billing_env.calls_to("/v1/customers")
    assert customer_call.params == {"name": "Acme Ltd", "metadata[account_id]": tenant.account_id}
    assert customer_call.idempotency_key == f"qorch-customer-{tenant.account_id}-0"
    assert customer_call.headers["authorization"] == f"Bearer {billing_support.API_KEY}"
    customer = billing_env.created["/v1/customers"][0]["id"]
    [session_call] = billing_env.calls_to("/v1/checkout/sessions")
    assert session_call.params == {
        "mode": "subscription",
        "customer": customer,
        "line_items[0][price]": PRICE_PRO,
        "line_items[0][quantity]": "1",
        "client_reference_id": tenant.account_id,
        "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL,
        "metadata[account_id]": tenant.account_id,
        "metadata[plan]": "pro",
        "subscription_data[metadata][account_id]": tenant.account_id,
        "subscription_data[metadata][plan]": "pro",
    }
    assert session_call.idempotency_key is None or not session_call.idempotency_key.startswith("qorch-")
    stored = stored_account(api, tenant.account_id)
    assert stored["stripe_customer_id"] == customer
    assert api.store.get(api.store.stripe_customer(customer)).get("account_id") == tenant.account_id
    # A second checkout (say, for another plan) reuses the customer.
    assert api.post(CHECKOUT, {"plan": "starter"}, tenant.owner).status == 200
    assert len(billing_env.calls_to("/v1/customers")) == 1
    assert billing_env.calls_to("/v1/checkout/sessions")[-1].params["line_items[0][price]"] == PRICE_STARTER
    assert billing_env.calls_to("/v1/checkout/sessions")[-1].params["customer"] == customer


def test_a_retry_after_a_stripe_failure_never_makes_a_second_customer(api, billing_env):
    tenant = customer_tenant(api)
    before = snapshot_all(api.store)
    billing_env.fail("/v1/checkout/sessions", 400, "invalid_request_error", "No such price")
    r = api.post(CHECKOUT, {"plan": "pro"}, tenant.owner)
    assert r.status == 502 and r.code == "billing_provider_error" and "No such price" in r.body["detail"]
    assert snapshot_all(api.store) == before  # the customer exists in Stripe, but nothing was written here
    assert api.post(CHECKOUT, {"plan": "pro"}, tenant.owner).status == 200
    calls = billing_env.calls_to("/v1/customers")
    assert len(calls) == 2 and calls[0].idempotency_key == calls[1].idempotency_key
    assert len(billing_env.created["/v1/customers"]) == 1  # Stripe answered the retry with the first customer
    assert stored_account(api, tenant.account_id)["stripe_customer_id"] == billing_env.created["/v1/customers"][0][
        "id"]


def test_concurrent_checkouts_link_one_customer(api, billing_env):
    tenant = customer_tenant(api)

    def go(_: int) -> int:
        client = api.client.application.test_client()
        r = client.post(CHECKOUT, json={"plan": "pro"}, headers={"Authorization": f"Bearer {tenant.owner}"})
        return r.status_code

    statuses = together(5, go)
    assert statuses == [200] * 5
    assert len(billing_env.created["/v1/customers"]) == 1
    customer = billing_env.created["/v1/customers"][0]["id"]
    assert stored_account(api, tenant.account_id)["stripe_customer_id"] == customer
    assert {c.params["customer"] for c in billing_env.calls_to("/v1/checkout/sessions")} == {customer}


def test_checkout_with_an_idempotency_key_replays_the_same_session(api, billing_env):
    tenant = customer_tenant(api)
    headers = {"Idempotency-Key": "checkout-1"}
    first = api.post(CHECKOUT, {"plan": "pro"}, tenant.owner, headers=headers)
    again = api.post(CHECKOUT, {"plan": "pro"}, tenant.owner, headers=headers)
    assert first.status == again.status == 200 and first.body == again.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(billing_env.calls_to("/v1/checkout/sessions")) == 1
    key = billing_env.calls_to("/v1/checkout/sessions")[0].idempotency_key
    assert key.startswith(f"qorch-checkout-{tenant.account_id}-")
    other = api.post(CHECKOUT, {"plan": "starter"}, tenant.owner, headers=headers)
    assert other.status == 422 and other.code == "idempotency_key_reused"


@pytest.mark.parametrize(("who", "body", "status", "code"), [
    ("agent", {"plan": "pro"}, 403, "forbidden"),
    ("owner", {"plan": "dev"}, 422, "validation_error"),
    ("owner", {"plan": "platinum"}, 422, "validation_error"),
    ("owner", {"plan": "pro", "extra": 1}, 422, "validation_error"),
    ("owner", {}, 422, "validation_error"),
    ("nobody", {"plan": "pro"}, 401, "unauthenticated"),
])
def test_checkout_refusals_write_nothing_and_call_no_one(api, billing_env, who, body, status, code):
    tenant = customer_tenant(api, agent=True)
    key = {"agent": tenant.agents.get(next(iter(tenant.agents))), "owner": tenant.owner, "nobody": None}[who]
    before = snapshot_all(api.store)
    r = api.post(CHECKOUT, body, key)
    assert (r.status, r.code) == (status, code), r.body
    assert snapshot_all(api.store) == before
    assert billing_env.calls == []


def test_checkout_when_already_subscribed_points_to_the_portal(api, billing_env):
    tenant = customer_tenant(api)
    sub = subscribe(api, tenant, status="past_due")
    before = snapshot_all(api.store)
    r = api.post(CHECKOUT, {"plan": "starter"}, tenant.owner)
    assert r.status == 409 and r.code == "already_subscribed"
    assert r.body["subscription_id"] == sub and r.body["portal"] == "POST /v1/billing/portal-session"
    assert snapshot_all(api.store) == before and billing_env.calls == []


@pytest.mark.parametrize("missing", ["STRIPE_API_KEY", "QORCH_STRIPE_PRICE_PRO", "QORCH_CHECKOUT_SUCCESS_URL"])
def test_checkout_without_configuration_is_503_and_writes_nothing(api, billing_env, monkeypatch, missing):
    tenant = customer_tenant(api)
    unconfigure(monkeypatch, missing)
    before = snapshot_all(api.store)
    r = api.post(CHECKOUT, {"plan": "pro"}, tenant.owner)
    assert r.status == 503 and r.code == "billing_not_configured" and r.body["detail"]
    assert snapshot_all(api.store) == before


def test_stripe_unreachable_is_503_and_writes_nothing(api, billing_env, monkeypatch):
    tenant = customer_tenant(api)
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9")
    billing_support._reload()
    before = snapshot_all(api.store)
    r = api.post(CHECKOUT, {"plan": "pro"}, tenant.owner)
    assert r.status == 503 and r.code == "unavailable" and "Stripe" in r.body["detail"]
    assert snapshot_all(api.store) == before


def test_a_rejected_api_key_is_a_configuration_problem(api, billing_env):
    tenant = customer_tenant(api)
    billing_env.fail("/v1/customers", 401, "invalid_request_error", "Invalid API Key provided")
    r = api.post(CHECKOUT, {"plan": "pro"}, tenant.owner)
    assert r.status == 503 and r.code == "billing_not_configured"


# ---- portal ------------------------------------------------------------------------------------------------------


def test_the_portal_needs_an_account_that_has_paid(api, billing_env):
    tenant = customer_tenant(api, agent=True)
    before = snapshot_all(api.store)
    r = api.post(PORTAL, key=tenant.owner)
    assert r.status == 409 and r.code == "no_billing_account" and r.body["checkout"] == "POST " + CHECKOUT
    api.post(CHECKOUT, {"plan": "pro"}, tenant.owner)  # a customer, but no subscription yet: still never paid
    before = snapshot_all(api.store)
    assert api.post(PORTAL, key=tenant.owner).code == "no_billing_account"
    assert snapshot_all(api.store) == before
    subscribe(api, tenant)
    agent = tenant.agents[next(iter(tenant.agents))]
    assert api.post(PORTAL, key=agent).status == 403
    billing_env.reset()
    r = api.post(PORTAL, key=tenant.owner)
    assert r.status == 200 and r.body["url"].startswith("https://billing.stripe.com/")
    [call] = billing_env.calls_to("/v1/billing_portal/sessions")
    assert call.params == {"customer": stored_account(api, tenant.account_id)["stripe_customer_id"],
                           "return_url": RETURN_URL}


# ---- account -----------------------------------------------------------------------------------------------------


def test_get_account_of_an_operator_granted_account(api, tenant):
    r = api.get("/v1/account", tenant.owner)
    assert r.status == 200
    dev = config().plans.get("dev")
    assert r.body == {
        "id": tenant.account_id, "name": "Acme", "plan": "dev",
        "entitlement": {"entitled": True, "status": "granted",
                        "reason": "Granted by an operator; no Stripe subscription.", "grace_until": None,
                        "subscription_id": None, "current_period_end": None, "cancel_at_period_end": False},
        "limits": dev.limits(),
        "usage": {"active_workflows": 0, "this_month": {
            "month": clock.now().strftime("%Y-%m"), "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
            "cost_usd": 0.0, "unpriced_calls": 0}},
    }
    api.create(tenant)
    agent_view = api.get("/v1/account", tenant.key_for(next(iter(tenant.agents)))).body
    assert agent_view["usage"]["active_workflows"] == 1


def test_get_account_of_a_subscriber(api, billing_env):
    tenant = customer_tenant(api)
    assert api.get("/v1/account", tenant.owner).body["entitlement"]["status"] == "none"
    sub = subscribe(api, tenant, price=PRICE_STARTER)
    body = api.get("/v1/account", tenant.owner).body
    assert body["plan"] == "starter" and body["limits"] == config().plans.get("starter").limits()
    assert body["entitlement"]["entitled"] and body["entitlement"]["subscription_id"] == sub
    cold_instance()
    api.store.rpcs.clear()
    api.get("/v1/account", tenant.owner)
    assert dict(api.store.rpcs) == {"get": 1, "batch_get": 1}  # the key; the account with this month's usage


# ---- the gate on POST /v1/workflows ------------------------------------------------------------------------------


def test_creating_a_workflow_is_one_batched_read_and_one_commit(api, billing_env):
    tenant = customer_tenant(api)
    subscribe(api, tenant)
    used(api, tenant.owner)
    cold_instance()
    api.store.rpcs.clear()
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 201
    assert api.store.rpcs["batch_get"] == 1 and api.store.rpcs["commit"] == 1
    assert api.store.rpcs["get"] == 1  # the API key


def test_not_entitled_is_402_with_how_to_pay_and_writes_nothing(api, billing_env):
    tenant = customer_tenant(api)
    before = snapshot_all(api.store)
    r = api.post("/v1/workflows", {"title": "x"}, tenant.owner, headers={"Idempotency-Key": "k1"})
    assert r.status == 402 and r.code == "payment_required"
    assert r.body["checkout"] == "POST /v1/billing/checkout-session" and "subscribe" in r.body["detail"]
    assert r.body["entitlement"]["status"] == "none"
    assert snapshot_all(api.store) == before


def test_the_operator_grant_does_not_outlast_a_stripe_subscription(api, billing_env):
    tenant = customer_tenant(api, entitled=True)
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 201
    sub = subscribe(api, tenant)
    customer = stored_account(api, tenant.account_id)["stripe_customer_id"]
    deliver(api, event("customer.subscription.deleted", subscription(sub, customer, "canceled", PRICE_PRO, now_s()),
                       now_s() + 1))
    assert stored_account(api, tenant.account_id)["entitled"] is True
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 402


def test_at_the_quota_is_403_and_writes_nothing(api, billing_env):
    tenant = customer_tenant(api)
    subscribe(api, tenant, price=PRICE_STARTER)
    limit = config().plans.get("starter").max_active_workflows
    set_active_count(api, tenant.account_id, limit)
    before = snapshot_all(api.store)
    r = api.post("/v1/workflows", {"title": "x"}, tenant.owner)
    assert r.status == 403 and r.code == "quota_exceeded"
    assert (r.body["plan"], r.body["limit"], r.body["active_workflows"]) == ("starter", limit, limit)
    assert snapshot_all(api.store) == before


def test_the_quota_counts_only_active_workflows(api, billing_env):
    tenant = customer_tenant(api, plan="starter", entitled=True)
    limit = config().plans.get("starter").max_active_workflows
    made = [api.create(tenant) for _ in range(limit)]
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).code == "quota_exceeded"
    api.move(tenant, made[0], "CANCELLED", key=tenant.owner)
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 201


def post_workflow(api, tenant, i: int):
    """A create from a client of its own (test clients are not shared between threads)."""
    client = api.client.application.test_client()
    return client.post("/v1/workflows", json={"title": f"wf {i}"}, headers={"Authorization": f"Bearer {tenant.owner}"})


def test_ten_parallel_creates_at_limit_minus_one_admit_exactly_one(api, billing_env):
    tenant = customer_tenant(api)
    subscribe(api, tenant, price=PRICE_STARTER)
    limit = config().plans.get("starter").max_active_workflows
    set_active_count(api, tenant.account_id, limit - 1)

    def create(i: int) -> tuple[int, str | None]:
        r = post_workflow(api, tenant, i)
        return r.status_code, (r.get_json() or {}).get("code")

    results = together(10, create)
    assert sorted(results, key=str) == sorted([(201, None)] + [(403, "quota_exceeded")] * 9, key=str)
    assert stored_account(api, tenant.account_id)["active_workflows"] == limit
    assert len(list(raw(api.store, api.store.workflows(tenant.account_id)).stream())) == 1


def test_twenty_parallel_creates_under_the_quota_all_succeed_and_the_count_is_exact(api, tenant):
    statuses = together(20, lambda i: post_workflow(api, tenant, i).status_code)
    assert statuses == [201] * 20
    assert stored_account(api, tenant.account_id)["active_workflows"] == 20

"""Chaos, end to end: a realistic life of a subscription delivered through the real webhook (signed, over the HTTP
edge, into the Firestore emulator) in 50 random orders with random duplicates. The stored result and the
entitlement equal the in-order result, and no event is applied twice."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from shared.domain import billing
from shared.domain.models import Account
from shared.runtime.config import config
from shared.services import accounts
from tests import billing_support
from tests.billing_support import DAY, comparable, deliver, fold, life, now_s

billing_env = billing_support.billing_env  # fixture
RUNS = 50


def test_fifty_random_deliveries_of_a_subscriptions_life_end_where_the_in_order_delivery_ends(api, billing_env):
    rng = random.Random(20261124)
    t0 = now_s() - 40 * DAY  # so that "now" falls inside the past_due grace of the failed renewal
    catalog = config().plans
    for run in range(RUNS):
        account = accounts.create_account(api.store, f"Chaos {run}")
        events = life(account.id, f"cus_chaos{run}", f"sub_chaos{run}", t0, tag=f"chaos{run}")
        # Even runs deliver the whole life; odd runs a random prefix of it (so the result is not always "deleted").
        prefix = events if run % 2 == 0 else events[:rng.randint(1, len(events))]
        delivery = list(prefix)
        if run > 0:  # run 0 is the plain in-order delivery
            delivery += rng.choices(prefix, k=rng.randint(1, len(prefix)))
            rng.shuffle(delivery)

        answers: dict[str, list[str]] = {}
        for ev in delivery:
            r = deliver(api, ev)
            assert r.status == 200, r.body
            answers.setdefault(ev["id"], []).append(r.body["outcome"])

        # Exactly one decision per event; every other delivery of it is recognised as a duplicate.
        for event_id, outcomes in answers.items():
            assert outcomes[0] in ("applied", "stale") and set(outcomes[1:]) <= {"duplicate"}, (event_id, outcomes)
        records = [api.store.get(api.store.stripe_event(e["id"])).data for e in prefix]
        assert all(r["account_id"] == account.id for r in records)

        stored = Account.model_validate(api.store.get(api.store.account(account.id)).data)
        expected, applied = fold(account, prefix, catalog, datetime.now(UTC))
        assert comparable(stored) == comparable(expected), (run, [e["id"] for e in delivery])
        now, grace = datetime.now(UTC), timedelta(days=3)
        assert billing.standing(stored, catalog, now, grace) == billing.standing(expected, catalog, now, grace)
        # What the webhook applied is what the in-order delivery applies, never more.
        applied_here = Counter(i for i, o in answers.items() if o[0] == "applied")
        assert set(applied_here) <= set(e["id"] for e in prefix)
        if run == 0:
            assert applied_here == applied

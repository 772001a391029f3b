from tests.helpers import assert_event_log


def test_full_loop(api, tenant):
    wf = api.create(tenant, labels={"team": "shop"})
    assert wf["state"] == "DISCOVERY" and wf["version"] == 1
    for to in ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "IMPLEMENTATION", "TESTING", "VERIFICATION",
               "REVIEW", "DEPLOYMENT", "COMPLETED"]:
        api.move(tenant, wf, to)
    final = assert_event_log(api.store, tenant.account_id, wf["id"])
    assert final.state == "COMPLETED" and final.retry_count == 1 and final.final

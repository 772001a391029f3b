from tests.helpers import assert_event_log


def test_full_loop(api, tenant):
    wf = api.create(tenant, labels={"team": "shop"})
    assert wf["state"] == "DISCOVERY" and wf["version"] == 1
    for to in ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "IMPLEMENTATION", "TESTING", "VERIFICATION",
               "REVIEW", "DEPLOYMENT", "COMPLETED"]:
        api.move(tenant, wf, to)
    final = assert_event_log(api.store, tenant.account_id, wf["id"])
    assert final.state == "COMPLETED" and final.retry_count == 1 and final.final


def test_active_workflow_count_follows_the_state(api, tenant):
    from shared.services.accounts import get_account

    a = api.create(tenant)
    api.create(tenant)
    assert get_account(api.store, tenant.account_id).active_workflows == 2
    api.move(tenant, a, "PLANNING")
    api.move(tenant, a, "FAILED")
    assert get_account(api.store, tenant.account_id).active_workflows == 1
    r = api.post(f"/v1/workflows/{a['id']}/rollback", {"to_version": 2, "reason": "resume"}, tenant.owner)
    assert r.status == 200, r.body
    assert get_account(api.store, tenant.account_id).active_workflows == 2

from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import handoffs


@endpoint("claim_handoff")
def claim_handoff(req: ApiRequest) -> Reply:
    outcome = handoffs.claim_handoff(req.store, req.caller, req.body, req.idempotency)
    return Reply(None, 204) if outcome is None else Reply.of(outcome)

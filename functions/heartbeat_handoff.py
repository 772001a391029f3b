from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import handoffs


@endpoint("heartbeat_handoff")
def heartbeat_handoff(req: ApiRequest) -> Reply:
    return Reply.of(handoffs.heartbeat_handoff(req.store, req.caller, req.params["workflow_id"],
                                               req.params["handoff_id"], req.body, req.idempotency))

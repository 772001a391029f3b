from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import members


@endpoint("update_member")
def update_member(req: ApiRequest) -> Reply:
    member_id = req.params["member_id"]
    return Reply.of(members.update_member(req.store, req.caller, member_id, req.body, req.idempotency))

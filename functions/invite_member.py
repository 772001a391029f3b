from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import members


@endpoint("invite_member")
def invite_member(req: ApiRequest) -> Reply:
    return Reply.of(members.invite_member(req.store, req.caller, req.body, req.idempotency), 201)

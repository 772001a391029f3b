from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import members


@endpoint("accept_invitation")
def accept_invitation(req: ApiRequest) -> Reply:
    return Reply.of(members.accept_invitation(req.store, req.signed_in, req.body, req.idempotency))

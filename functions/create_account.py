from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import members


@endpoint("create_account")
def create_account(req: ApiRequest) -> Reply:
    outcome = members.create_account(req.store, req.signed_in, req.body, req.idempotency)
    return Reply.of(outcome, 201, {"Location": "/v1/account"})

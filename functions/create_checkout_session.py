from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import billing


@endpoint("create_checkout_session")
def create_checkout_session(req: ApiRequest) -> Reply:
    return Reply.of(billing.create_checkout_session(req.store, req.caller, req.body, req.idempotency))

from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import billing


@endpoint("create_portal_session")
def create_portal_session(req: ApiRequest) -> Reply:
    return Reply.of(billing.create_portal_session(req.store, req.caller, req.idempotency))

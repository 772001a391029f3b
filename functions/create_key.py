from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import keys


@endpoint("create_key")
def create_key(req: ApiRequest) -> Reply:
    return Reply.of(keys.create_key(req.store, req.caller, req.body, req.idempotency), 201)

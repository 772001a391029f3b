from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import keys


@endpoint("list_keys")
def list_keys(req: ApiRequest) -> Reply:
    return Reply(keys.list_keys(req.store, req.caller))

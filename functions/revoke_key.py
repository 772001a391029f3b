from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import keys


@endpoint("revoke_key")
def revoke_key(req: ApiRequest) -> Reply:
    return Reply(keys.revoke(req.store, req.caller, req.params["key_id"]))

from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import members


@endpoint("remove_member")
def remove_member(req: ApiRequest) -> Reply:
    members.remove_member(req.store, req.caller, req.params["member_id"])
    return Reply(None, 204)

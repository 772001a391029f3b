from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import members


@endpoint("list_members")
def list_members(req: ApiRequest) -> Reply:
    return Reply(members.list_members(req.store, req.caller))

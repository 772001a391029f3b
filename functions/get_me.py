from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import members


@endpoint("get_me")
def get_me(req: ApiRequest) -> Reply:
    return Reply(members.get_me(req.store, req.signed_in))

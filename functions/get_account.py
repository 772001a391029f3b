from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import billing


@endpoint("get_account")
def get_account(req: ApiRequest) -> Reply:
    return Reply(billing.get_account(req.store, req.caller))

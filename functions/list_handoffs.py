from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import handoffs


@endpoint("list_handoffs")
def list_handoffs(req: ApiRequest) -> Reply:
    q = req.query  # validated by the route's query model
    return Reply(handoffs.list_handoffs(req.store, req.caller, req.params["workflow_id"], limit=q.limit,
                                        page_token=q.page_token))

from shared.domain.models import PageQuery
from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import handoffs


@endpoint("list_handoffs")
def list_handoffs(req: ApiRequest) -> Reply:
    q: PageQuery = req.query
    return Reply(handoffs.list_handoffs(req.store, req.caller, req.params["workflow_id"], limit=q.limit,
                                        page_token=q.page_token))

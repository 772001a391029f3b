from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("list_workflows")
def list_workflows(req: ApiRequest) -> Reply:
    q = req.query  # validated by the route's query model
    return Reply(workflows.list_workflows(req.store, req.caller, state=q.state, role=q.role, label=q.label,
                                          limit=q.limit, page_token=q.page_token))

from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("list_workflow_events")
def list_workflow_events(req: ApiRequest) -> Reply:
    q = req.query  # validated by the route's query model
    return Reply(workflows.list_events(req.store, req.caller, req.params["workflow_id"], limit=q.limit,
                                       page_token=q.page_token))

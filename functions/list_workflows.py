from shared.domain.models import ListWorkflowsQuery
from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("list_workflows")
def list_workflows(req: ApiRequest) -> Reply:
    q: ListWorkflowsQuery = req.query
    return Reply(workflows.list_workflows(req.store, req.caller, state=q.state, role=q.role, label=q.label,
                                          limit=q.limit, page_token=q.page_token))

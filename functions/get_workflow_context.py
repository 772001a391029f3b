from shared.adapters.objectstore import get_object_store
from shared.domain.agent_models import ContextQuery
from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import context


@endpoint("get_workflow_context")
def get_workflow_context(req: ApiRequest) -> Reply:
    q: ContextQuery = req.query
    return Reply(context.get_context(req.store, get_object_store, req.caller, req.params["workflow_id"],
                                     events=q.events, page_token=q.page_token))

from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import artifacts, context


@endpoint("get_workflow_context")
def get_workflow_context(req: ApiRequest) -> Reply:
    return Reply(context.get_context(req.store, artifacts.object_store, req.caller, req.params["workflow_id"],
                                     events=req.query.events, page_token=req.query.page_token))

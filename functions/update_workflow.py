from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("update_workflow")
def update_workflow(req: ApiRequest) -> Reply:
    return Reply.of(workflows.update_workflow(req.store, req.caller, req.params["workflow_id"], req.body,
                                              req.idempotency))

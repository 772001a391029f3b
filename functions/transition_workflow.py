from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("transition_workflow")
def transition_workflow(req: ApiRequest) -> Reply:
    workflow_id = req.params["workflow_id"]
    return Reply.of(workflows.transition_workflow(req.store, req.caller, workflow_id, req.body, req.idempotency))

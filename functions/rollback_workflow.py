from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("rollback_workflow")
def rollback_workflow(req: ApiRequest) -> Reply:
    workflow_id = req.params["workflow_id"]
    return Reply.of(workflows.rollback_workflow(req.store, req.caller, workflow_id, req.body, req.idempotency))

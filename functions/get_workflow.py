from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("get_workflow")
def get_workflow(req: ApiRequest) -> Reply:
    return Reply(workflows.get_workflow(req.store, req.caller, req.params["workflow_id"]))

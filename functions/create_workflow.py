from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import workflows


@endpoint("create_workflow")
def create_workflow(req: ApiRequest) -> Reply:
    outcome = workflows.create_workflow(req.store, req.caller, req.body, req.idempotency)
    return Reply.of(outcome, 201, {"Location": f"/v1/workflows/{outcome.body['id']}"})

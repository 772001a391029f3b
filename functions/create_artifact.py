from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import artifacts


@endpoint("create_artifact")
def create_artifact(req: ApiRequest) -> Reply:
    workflow_id = req.params["workflow_id"]
    outcome = artifacts.create_artifact(req.store, artifacts.object_store(), req.caller, workflow_id, req.body,
                                        req.idempotency)
    location = f"/v1/workflows/{workflow_id}/artifacts/{outcome.body['artifact']['id']}"
    return Reply.of(outcome, 201, {"Location": location})

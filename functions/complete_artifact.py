from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import artifacts


@endpoint("complete_artifact")
def complete_artifact(req: ApiRequest) -> Reply:
    return Reply.of(artifacts.complete_artifact(req.store, artifacts.object_store(), req.caller,
                                                req.params["workflow_id"], req.params["artifact_id"], req.idempotency))

from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import artifacts


@endpoint("get_artifact")
def get_artifact(req: ApiRequest) -> Reply:
    return Reply(artifacts.get_artifact(req.store, artifacts.object_store(), req.caller, req.params["workflow_id"],
                                        req.params["artifact_id"]))

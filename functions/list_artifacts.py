from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import artifacts


@endpoint("list_artifacts")
def list_artifacts(req: ApiRequest) -> Reply:
    q = req.query  # validated by the route's query model
    return Reply(artifacts.list_artifacts(req.store, req.caller, req.params["workflow_id"], limit=q.limit,
                                          page_token=q.page_token))

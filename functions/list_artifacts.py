from shared.domain.models import PageQuery
from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import artifacts


@endpoint("list_artifacts")
def list_artifacts(req: ApiRequest) -> Reply:
    q: PageQuery = req.query
    return Reply(artifacts.list_artifacts(req.store, req.caller, req.params["workflow_id"], limit=q.limit,
                                          page_token=q.page_token))

from shared.http.endpoint import ApiRequest, Reply, endpoint
from shared.services import context


@endpoint("list_agent_tools")
def list_agent_tools(req: ApiRequest) -> Reply:
    return Reply(context.agent_tools(req.query.format))

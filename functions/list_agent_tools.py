from shared.domain import agent_tools
from shared.domain.agent_models import AgentTools
from shared.http.endpoint import ApiRequest, Reply, endpoint


@endpoint("list_agent_tools")
def list_agent_tools(req: ApiRequest) -> Reply:
    fmt = req.query.format
    return Reply(AgentTools(format=fmt, tools=agent_tools.definitions(fmt)))

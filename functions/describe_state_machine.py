from shared.http import openapi
from shared.http.endpoint import ApiRequest, Reply, endpoint


@endpoint("describe_state_machine")
def describe_state_machine(req: ApiRequest) -> Reply:
    return Reply(openapi.state_machine())

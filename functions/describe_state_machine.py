from shared.domain import state_machine
from shared.http.endpoint import ApiRequest, Reply, endpoint


@endpoint("describe_state_machine")
def describe_state_machine(req: ApiRequest) -> Reply:
    return Reply(state_machine.describe())

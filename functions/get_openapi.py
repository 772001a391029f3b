from shared import openapi
from shared.http import ApiRequest, Reply, endpoint


@endpoint("get_openapi")
def get_openapi(req: ApiRequest) -> Reply:
    return Reply(openapi.document())

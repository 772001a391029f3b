from shared.http import openapi
from shared.http.endpoint import ApiRequest, Reply, endpoint


@endpoint("get_openapi")
def get_openapi(req: ApiRequest) -> Reply:
    return Reply(openapi.document())

import flask

from shared.http.cors import serve_preflight


def cors_preflight(request: flask.Request) -> flask.Response:
    """API Gateway's backend for the `options` operation of every /v1 path (a path's methods are other functions)."""
    return serve_preflight(request)

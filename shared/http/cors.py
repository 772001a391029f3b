"""CORS: which web pages on other origins may call the API, and the headers that tell their browsers so.

One allow-list of exact origins, `QORCH_CORS_ORIGINS` (`config().cors_origins`). Every `/v1` path answers its
preflight (`OPTIONS`) with 204 from the function that serves the path (`shared.http.endpoint` calls `preflight`), and
behind API Gateway from `cors_preflight` (`serve_preflight`), the one backend of every `options` operation there,
because a path's GET and POST are different functions. A response to an allowed origin carries
`Access-Control-Allow-Origin`, `Vary: Origin` and `Access-Control-Expose-Headers` (`decorate`), errors included.
An origin not on the list gets no CORS headers and otherwise the same answer: CORS is not authentication, the API
key or token is.

Imports only flask, the route table and the configuration, so `cors_preflight` starts without the store client.
"""

from __future__ import annotations

import time

import flask

from shared.http.routes import routes_for
from shared.runtime import logs
from shared.runtime.config import config

# Request headers a page may send: every header the API reads from a browser (X-Qorch-Account picks one account for
# a person who belongs to several). X-Forwarded-Authorization is the gateway's, never a browser's.
ALLOW_HEADERS: tuple[str, ...] = ("Authorization", "Content-Type", "Idempotency-Key", "X-Qorch-Account")
# Response headers a page may read besides the CORS-safelisted ones (Content-Type, ...): every header a client acts on.
EXPOSE_HEADERS: tuple[str, ...] = ("Location", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate", "Allow")
# How long a browser may reuse a preflight's answer. Short, so an origin taken off the list stops sending
# (credentialed) requests soon; the Allow-Origin of each real response is checked every time regardless.
MAX_AGE_SECONDS = 600


def methods_for(path: str) -> list[str]:
    """The methods of the /v1 path `path` (concrete, e.g. /v1/workflows/wf_1), from the route table; [] if none."""
    return sorted({r.method for r in routes_for(path)})


def allowed_origin(request: flask.Request) -> str | None:
    origin = request.headers.get("Origin")
    return origin if origin is not None and origin in config().cors_origins else None


def preflight(request: flask.Request) -> flask.Response:
    """The answer to `OPTIONS` on a known path: 204 with `Allow`, and for an allowed origin what the browser needs to
    send the real request. `decorate` adds the origin itself."""
    methods = methods_for(request.path)
    response = flask.Response(status=204, headers={"Allow": ", ".join([*methods, "OPTIONS"])})
    if allowed_origin(request) is not None:
        response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOW_HEADERS)
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    return response


def decorate(request: flask.Request, response: flask.Response) -> flask.Response:
    """Every answer (success or problem) to an allowed origin says so; any other answer is left exactly as it is."""
    origin = allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.vary.add("Origin")
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
    return response


def serve_preflight(request: flask.Request) -> flask.Response:
    """The `cors_preflight` function: API Gateway routes the `options` operation of every /v1 path here."""
    started = time.perf_counter()
    methods = methods_for(request.path)
    if request.method == "OPTIONS" and methods:
        response = preflight(request)
        code = None
    else:  # rare, and only errors load the problem renderer (and with it the store client)
        from shared.domain.errors import MethodNotAllowed, NotFound
        from shared.http.endpoint import problem_response

        error = NotFound("No such resource.") if not methods else MethodNotAllowed(["OPTIONS"])
        response = problem_response(error, request.path)
        code = error.code
    response = decorate(request, response)
    latency = time.perf_counter() - started
    logs.emit({"severity": "INFO" if response.status_code < 400 else "WARNING",
               "message": f"{request.method} {request.path} {response.status_code}",
               "httpRequest": {"requestMethod": request.method, "requestUrl": request.path,
                               "status": response.status_code, "latency": f"{latency:.6f}s"},
               "latency_ms": round(latency * 1000, 3), "function": "cors_preflight",
               **({"code": code} if code else {}), **({"origin": request.headers["Origin"]}
                                                       if "Origin" in request.headers else {})})
    return response

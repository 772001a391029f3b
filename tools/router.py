"""The local router: one functions-framework target that serves every HTTP function under its /v1 path, the way
the API gateway does in production, and the dashboard (web/) at `/`, the way Firebase Hosting does. Used by
`make run` and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask
import functions_framework

import main
from shared.domain.errors import MethodNotAllowed, NotFound
from shared.http import cors
from shared.http.endpoint import problem_response
from shared.http.routes import routes_for
from tools import dashboard


@functions_framework.http
def router(request: flask.Request) -> Any:
    # Only bare /v1 paths here: the optional leading segment a function tolerates is the gateway's business.
    if not request.path.startswith("/v1/"):
        page = dashboard.serve(request)
        if page is not None:
            return page
    matching = routes_for(request.path) if request.path.startswith("/v1/") else []
    if not matching:
        return cors.decorate(request, problem_response(NotFound("No such resource."), request.path))
    for route in matching:
        # A preflight goes to a function of the path, as in production each function answers its own path's
        # (the gateway sends it to cors_preflight, which answers the same way).
        if route.method == request.method or request.method == "OPTIONS":
            return getattr(main, route.function)(request)
    return cors.decorate(request, problem_response(MethodNotAllowed(sorted({r.method for r in matching})),
                                                   request.path))


def create_app() -> flask.Flask:
    app = functions_framework.create_app(target="router", source=str(Path(__file__)), signature_type="http")
    app.register_error_handler(404, main.unmatched_path)  # `main` may have been imported before this app existed
    return app

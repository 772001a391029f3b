"""Entry points for the Cloud Functions Python runtime: one name per deployed function (see serverless.yml).

Each is a thin shim that imports its function's module on first call, so an instance loads only the code of the
one function it serves (cold start: no stripe or boto3 where they are not used). The configuration is validated
when this module loads, which is when an instance starts.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import flask
import functions_framework

from shared.http.event_functions import EVENT_FUNCTIONS
from shared.http.routes import ROUTES
from shared.runtime.config import config

# Validate the configuration (and load the plans file) once, at start: a bad value stops the instance here, with a
# message naming the variable, rather than failing requests later.
config()


def _http_entry(function: str) -> Any:
    def entry(request: flask.Request) -> Any:
        return getattr(import_module(f"functions.{function}"), function)(request)

    entry.__name__ = entry.__qualname__ = function
    return functions_framework.http(entry)


def _cloud_event_entry(function: str) -> Any:
    def entry(cloud_event: Any) -> None:
        getattr(import_module(f"functions.{function}"), function)(cloud_event)

    entry.__name__ = entry.__qualname__ = function
    return functions_framework.cloud_event(entry)


def unmatched_path(_: Exception) -> Any:
    """Flask's own 404, for a path that functions-framework's catch-all route cannot match at all (`<path:path>`
    does not match a newline, e.g. `/v1/workflows/a%0Ab`): answered like any unknown path, in problem+json."""
    from shared.http.cors import decorate
    from shared.http.endpoint import not_found

    return decorate(flask.request, not_found(flask.request.path))


# functions-framework runs this module inside the function's app, so this registers there (elsewhere: a no-op).
functions_framework.errorhandler(404)(unmatched_path)

for _route in ROUTES:
    globals()[_route.function] = _http_entry(_route.function)
# API Gateway's backend for the `options` operation of every /v1 path (CORS preflights; shared/http/cors.py).
PREFLIGHT_FUNCTION = "cors_preflight"
globals()[PREFLIGHT_FUNCTION] = _http_entry(PREFLIGHT_FUNCTION)
for _event_function in EVENT_FUNCTIONS:
    globals()[_event_function.function] = _cloud_event_entry(_event_function.function)

HTTP_FUNCTIONS = (*(r.function for r in ROUTES), PREFLIGHT_FUNCTION)
CLOUD_EVENT_FUNCTIONS = tuple(f.function for f in EVENT_FUNCTIONS)

"""Entry points for the Cloud Functions Python runtime: one name per deployed function (see serverless.yml).

Each is a thin shim that imports its function's module on first call, so an instance loads only the code of the
one function it serves (cold start: no stripe or boto3 where they are not used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import flask
import functions_framework

from shared.event_functions import EVENT_FUNCTIONS
from shared.routes import ROUTES


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


for _route in ROUTES:
    globals()[_route.function] = _http_entry(_route.function)
for _event_function in EVENT_FUNCTIONS:
    globals()[_event_function.function] = _cloud_event_entry(_event_function.function)

HTTP_FUNCTIONS = tuple(r.function for r in ROUTES)
CLOUD_EVENT_FUNCTIONS = tuple(f.function for f in EVENT_FUNCTIONS)

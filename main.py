"""Entry points for the Cloud Functions Python runtime: one name per deployed function (see serverless.yml).

Each is a thin shim that imports its function's module on first call, so an instance loads only the code of the
one function it serves (cold start: no stripe or boto3 where they are not used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import flask
import functions_framework

from shared.routes import ROUTES


def _http_entry(function: str) -> Any:
    def entry(request: flask.Request) -> Any:
        return getattr(import_module(f"functions.{function}"), function)(request)

    entry.__name__ = entry.__qualname__ = function
    return functions_framework.http(entry)


for _route in ROUTES:
    globals()[_route.function] = _http_entry(_route.function)

HTTP_FUNCTIONS = tuple(r.function for r in ROUTES)

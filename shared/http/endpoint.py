"""The HTTP edge shared by every function: method and path checks, auth, body limits, JSON and model parsing,
Idempotency-Key, the one problem+json renderer, and one JSON log line per request (Cloud Logging fields).

An entry point is `@endpoint("function_name", body=Model)` over a function of an `ApiRequest` that calls one
service and returns a `Reply`.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
import pydantic

from shared.adapters.firestore import Store, get_store
from shared.domain.errors import (
    Internal,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ValidationFailed,
)
from shared.http import cors
from shared.http.routes import BY_FUNCTION, Route
from shared.runtime import logs
from shared.runtime.config import config
from shared.services import auth, idempotency
from shared.services.auth import Person, Principal
from shared.services.idempotency import IdempotencyRequest, Outcome

PROBLEM_JSON = "application/problem+json"


@dataclass
class ApiRequest:
    raw: flask.Request
    route: Route
    params: dict[str, str]
    principal: Principal | None = None
    person: Person | None = None  # person-level routes: the signed-in person (no account chosen)
    body: Any = None
    query: Any = None
    idempotency: IdempotencyRequest | None = None
    log: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return get_store()

    @property
    def caller(self) -> Principal:
        assert self.principal is not None, "route is authenticated"
        return self.principal

    @property
    def signed_in(self) -> Person:
        assert self.person is not None, "route is person-level"
        return self.person


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, outcome: Outcome, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        """A POST's reply; a replay gets the first response's status and body, marked as replayed."""
        extra = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        return cls(outcome.body, status, {**(headers or {}), **extra})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> flask.Response:
    if isinstance(body, pydantic.BaseModel):
        body = body.model_dump(mode="json")
    return flask.Response(json.dumps(body, separators=(",", ":"), ensure_ascii=False), status=status,
                          headers=headers or {}, content_type=content_type)


def problem_response(error: ProblemError, instance: str | None = None) -> flask.Response:
    return json_response(error.to_problem(instance), error.status, error.headers, PROBLEM_JSON)


def not_found(path: str) -> flask.Response:
    """The answer for a path no function serves."""
    return problem_response(NotFound("No such resource."), path)


def _validation_errors(exc: pydantic.ValidationError, prefix: str = "") -> list[dict[str, str]]:
    return [
        {"field": prefix + (".".join(str(p) for p in err["loc"]) or "(body)"), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def read_body(request: flask.Request) -> bytes:
    """The raw body, at most `max_body_bytes` (413 beyond). Read it once: the stream is consumed."""
    limit = config().max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Bodies are limited to {limit} bytes.")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"Bodies are limited to {limit} bytes.")
    return data


def parse_body(request: flask.Request, model: type[pydantic.BaseModel]) -> tuple[Any, Any]:
    """(validated model, parsed JSON) of the request body, or the problem it has."""
    data = read_body(request)
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"The body could not be parsed as JSON: {exc}") from exc
    except RecursionError as exc:
        raise MalformedJson("The body is nested too deeply.") from exc
    try:
        return model.model_validate_json(data), raw
    except pydantic.ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):  # e.g. a lone surrogate \ud800
            raise MalformedJson(f"The body is not valid JSON text: {exc.errors()[0]['msg']}") from exc
        raise ValidationFailed(_validation_errors(exc)) from exc


def parse_query(request: flask.Request, model: type[pydantic.BaseModel]) -> Any:
    args = request.args
    repeated = [k for k in args if len(args.getlist(k)) > 1]
    if repeated:
        raise ValidationFailed([{"field": f"query:{k}", "message": "give it once"} for k in repeated])
    try:
        return model.model_validate(args.to_dict())
    except pydantic.ValidationError as exc:
        raise ValidationFailed(_validation_errors(exc, "query:")) from exc


def _trace(request: flask.Request) -> dict[str, str]:
    header = request.headers.get("X-Cloud-Trace-Context", "")
    trace_id = header.split("/", 1)[0].strip()
    if not trace_id:
        return {}
    return {"logging.googleapis.com/trace": f"projects/{config().project}/traces/{trace_id}"}


def _log(request: flask.Request, status: int, started: float, fields: dict[str, Any]) -> None:
    latency = time.perf_counter() - started
    line = {
        "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
        "message": f"{request.method} {request.path} {status}",
        "httpRequest": {"requestMethod": request.method, "requestUrl": request.path, "status": status,
                        "latency": f"{latency:.6f}s", "userAgent": request.headers.get("User-Agent", "")},
        "latency_ms": round(latency * 1000, 3),
        **_trace(request),
        **{k: v for k, v in fields.items() if v is not None},
    }
    logs.emit(line)


Handler = Callable[[ApiRequest], Reply]


def endpoint(function: str) -> Callable[[Handler], Callable[[flask.Request], Any]]:
    """Wrap a handler as the HTTP entry point of `function`: its method, path, body and query models come from
    `shared.http.routes`, so the handler gets them parsed and validated."""
    route = BY_FUNCTION[function]

    def wrap(handler: Handler) -> Callable[[flask.Request], flask.Response]:
        def entry(request: flask.Request) -> flask.Response:
            started = time.perf_counter()
            fields: dict[str, Any] = {"function": function}
            try:
                response = _handle(request, route, handler, fields)
            except ProblemError as error:
                fields["code"] = error.code
                if error.status == 401 and error.__cause__ is not None:  # why a credential failed: logged, not told
                    fields["auth_failure"] = str(error.__cause__)[:300]
                response = problem_response(error, request.path)
            except Exception:  # a bug: log it whole, answer a plain problem, never leak internals
                fields["code"] = Internal.code
                fields["stack_trace"] = traceback.format_exc()
                response = problem_response(Internal("An unexpected error occurred; it has been logged."),
                                            request.path)
            response = cors.decorate(request, response)  # CORS headers for allowed origins, problems included
            _log(request, response.status_code, started, fields)
            return response

        entry.__name__ = entry.__qualname__ = function
        entry.__doc__ = handler.__doc__
        return entry

    return wrap


def _handle(request: flask.Request, route: Route, handler: Handler, fields: dict[str, Any]) -> flask.Response:
    if request.method == "OPTIONS":  # a CORS preflight for this path: answered before auth, for all its methods
        if route.match(request.path) is None:
            raise NotFound("No such resource.")
        return cors.preflight(request)
    if request.method != route.method:
        raise MethodNotAllowed([route.method])
    params = route.match(request.path)
    if params is None:
        raise NotFound("No such resource.")
    fields.update(params)
    ctx = ApiRequest(raw=request, route=route, params=params, log=fields)
    if route.authenticated:
        # Behind API Gateway the caller's Authorization header arrives as X-Forwarded-Authorization (the gateway puts
        # its own identity token, for the function's IAM check, in Authorization).
        credential = request.headers.get("X-Forwarded-Authorization") or request.headers.get("Authorization")
        if route.person_only:
            ctx.person = auth.identify(credential)
            fields["actor"] = ctx.person.actor
        else:
            ctx.principal = auth.authenticate(ctx.store, credential, request.headers.get(auth.ACCOUNT_HEADER),
                                              write=route.method != "GET")
            fields["account_id"] = ctx.principal.account_id
            fields["actor"] = ctx.principal.actor
            if ctx.principal.key_id is not None:
                fields["key_id"] = ctx.principal.key_id
    if route.query is not None:
        ctx.query = parse_query(request, route.query)
    raw = None
    if route.body is not None:
        ctx.body, raw = parse_body(request, route.body)
    if route.writes:
        key = request.headers.get("Idempotency-Key")
        if route.idempotency_key_refused is None:
            ctx.idempotency = idempotency.parse(key, method=request.method, path=request.path, body=raw)
        elif key is not None:
            raise ValidationFailed([{"field": "header:Idempotency-Key",
                                     "message": f"not accepted here: {route.idempotency_key_refused}"}])
    reply = handler(ctx)
    if ctx.principal is not None:
        auth.note_use(ctx.store, ctx.principal)
    if reply.status == 204:  # No Content: no body, no content type
        return flask.Response(status=204, headers=reply.headers)
    return json_response(reply.body, reply.status, reply.headers)


logging.getLogger("werkzeug").setLevel(logging.WARNING)

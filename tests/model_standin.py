"""A model API stand-in: a real local HTTP server that speaks Anthropic's Messages API (`POST /v1/messages`) and
OpenAI's Chat Completions (`POST /v1/chat/completions`) and Responses API (`POST /v1/responses`) wire formats, and
answers from a script. The official SDKs are pointed at it with their base URLs (they talk over httpx2, which respx
cannot intercept), so every byte goes through the SDKs' real request building, retries and response parsing.

A script is a list of moves, one per request: a reply with tool calls (`call`), a text reply (`say`), or a refusal
(`fail`: a 429 with `retry-after-ms`, a 500). Arguments may be computed from the request (e.g. the artifact id the
last tool result gave), and may be malformed on purpose (`raw`: sent as the arguments string as it is).

Like the real APIs, it refuses (400) a conversation whose tool calls and results do not pair up, and (401) a request
without the expected key; everything it received and answered is kept for the test to inspect.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "sk-standin-0123456789abcdef"  # what the SDKs are given (from the environment); the stand-in requires it


@dataclass
class Call:
    name: str
    arguments: dict[str, Any] | Callable[[Request], dict[str, Any]] | None = None
    raw: str | None = None  # OpenAI: the arguments string exactly as sent (malformed JSON on purpose)


@dataclass
class Move:
    calls: list[Call] = field(default_factory=list)
    text: str = ""
    usage: tuple[int, int, int] = (100, 20, 0)  # input (uncached), output, cache read
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def call(name: str, arguments: Any = None, *, raw: str | None = None, usage: tuple[int, int, int] = (100, 20, 0),
         also: list[Call] | None = None) -> Move:
    return Move(calls=[Call(name, arguments, raw), *(also or [])], usage=usage)


def say(text: str, usage: tuple[int, int, int] = (50, 10, 0)) -> Move:
    return Move(text=text, usage=usage)


def fail(status: int, *, retry_after_ms: int | None = 1) -> Move:
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    return Move(status=status, headers=headers)


@dataclass
class Request:
    api: str  # "anthropic" | "chat" | "responses"
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def sent_key(self) -> str | None:
        """Anthropic's SDK 2.x sends the key as a Bearer token (1.x used x-api-key); OpenAI's as a Bearer token."""
        bearer = self.headers.get("authorization", "")
        return bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else self.headers.get("x-api-key")

    def tool_results(self) -> list[tuple[str, Any]]:
        """(call id, parsed content) of every tool result in the conversation, oldest first."""
        out: list[tuple[str, Any]] = []
        if self.api == "anthropic":
            for message in self.body["messages"]:
                if message["role"] == "user" and isinstance(message["content"], list):
                    out += [(b["tool_use_id"], _parse(b.get("content"))) for b in message["content"]
                            if b.get("type") == "tool_result"]
        elif self.api == "chat":
            out = [(m["tool_call_id"], _parse(m["content"])) for m in self.body["messages"] if m["role"] == "tool"]
        else:
            out = [(i["call_id"], _parse(i["output"])) for i in self.body["input"]
                   if i.get("type") == "function_call_output"]
        return out

    def last_result(self) -> Any:
        results = self.tool_results()
        return results[-1][1] if results else None

    def result_of(self, tool: str) -> Any:
        """The newest result of a call to `tool` (looked up by call id among the conversation's calls)."""
        names = dict(self.tool_calls())
        for call_id, content in reversed(self.tool_results()):
            if names.get(call_id) == tool:
                return content
        return None

    def tool_calls(self) -> list[tuple[str, str]]:
        """(call id, tool name) of every tool call the conversation carries, oldest first."""
        if self.api == "anthropic":
            return [(b["id"], b["name"]) for m in self.body["messages"] if m["role"] == "assistant"
                    and isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_use"]
        if self.api == "chat":
            return [(c["id"], c["function"]["name"]) for m in self.body["messages"]
                    if m["role"] == "assistant" for c in m.get("tool_calls") or []]
        return [(i["call_id"], i["name"]) for i in self.body["input"] if i.get("type") == "function_call"]

    def first_user_text(self) -> str:
        items = self.body["messages"] if self.api != "responses" else self.body["input"]
        first = next(m for m in items if m.get("role") == "user")
        return first["content"] if isinstance(first["content"], str) else json.dumps(first["content"])


def _parse(content: Any) -> Any:
    if isinstance(content, list):  # Anthropic content blocks
        content = "".join(b.get("text", "") for b in content)
    try:
        return json.loads(content)
    except (TypeError, ValueError):
        return content


def pairing_errors(api: str, body: dict[str, Any]) -> list[str]:
    """What the real API would refuse: a tool call without its result right after it, or a result without a call."""
    errors: list[str] = []
    if api == "anthropic":
        messages = body.get("messages", [])
        for i, message in enumerate(messages):
            content = message.get("content")
            blocks = content if isinstance(content, list) else []
            if message["role"] == "assistant":
                asked = [b["id"] for b in blocks if b.get("type") == "tool_use"]
                if not asked:
                    continue
                nxt = messages[i + 1] if i + 1 < len(messages) else None
                given = [b["tool_use_id"] for b in (nxt or {}).get("content", []) if isinstance(b, dict)
                         and b.get("type") == "tool_result"] if nxt and isinstance(nxt.get("content"), list) else []
                if set(asked) - set(given):
                    errors.append(f"messages.{i}: tool_use ids {asked} were not answered by tool_result blocks "
                                  f"in the next message (got {given})")
            elif message["role"] == "user":
                prev = messages[i - 1] if i else None
                asked = {b["id"] for b in (prev or {}).get("content", []) if isinstance(b, dict)
                         and b.get("type") == "tool_use"} if prev and isinstance(prev.get("content"), list) else set()
                for b in blocks:
                    if b.get("type") == "tool_result" and b["tool_use_id"] not in asked:
                        errors.append(f"messages.{i}: tool_result {b['tool_use_id']} has no tool_use before it")
    elif api == "chat":
        pending: set[str] = set()
        for i, message in enumerate(body.get("messages", [])):
            if message["role"] == "tool":
                if message["tool_call_id"] not in pending:
                    errors.append(f"messages.{i}: tool message for an unknown tool_call_id")
                pending.discard(message["tool_call_id"])
            elif pending:
                errors.append(f"messages.{i}: tool_calls {sorted(pending)} were not answered")
                pending = set()
            if message["role"] == "assistant":
                pending = {c["id"] for c in message.get("tool_calls") or []}
        if pending:
            errors.append(f"tool_calls {sorted(pending)} were not answered")
    else:
        asked = {i["call_id"] for i in body.get("input", []) if i.get("type") == "function_call"}
        given = [i["call_id"] for i in body.get("input", []) if i.get("type") == "function_call_output"]
        errors += [f"function_call_output {g} has no function_call" for g in given if g not in asked]
        errors += [f"function_call {a} has no output" for a in sorted(asked - set(given))]
    return errors


class ModelStandin:
    """`with ModelStandin() as m:` serves on a free loopback port; `m.script = [...]` (one move per request);
    `m.env()` gives the SDKs' environment. After the script, every request answers 500 (the test ran too long)."""

    def __init__(self) -> None:
        self.script: list[Move | Callable[[Request], Move]] = []
        self.requests: list[Request] = []
        self.answered: list[tuple[Request, int, dict[str, Any]]] = []
        self.returned_usage: list[dict[str, int]] = []  # the usage of every 200 reply, in wire form
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, payload, headers = standin._answer(self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller hung up mid-call (a runner stopped by Ctrl-C): there is no one left to answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="model-standin")

    def __enter__(self) -> ModelStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self) -> dict[str, str]:
        """The environment the SDKs read: keys and base URLs (Anthropic's without /v1, OpenAI's with it)."""
        return {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": self.url,
                "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{self.url}/v1"}

    def requests_to(self, api: str) -> list[Request]:
        return [r for r in self.requests if r.api == api]

    # ---- answering -------------------------------------------------------------------------------------------

    def _answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        api = {"/v1/messages": "anthropic", "/v1/chat/completions": "chat", "/v1/responses": "responses"}.get(path)
        if api is None:
            return 404, {"error": {"message": f"no route {path}"}}, {}
        request = Request(api, path, {k.lower(): v for k, v in headers.items()}, body)
        with self._lock:
            self.requests.append(request)
            move = self.script.pop(0) if self.script else Move(status=500)
        sent_key = request.sent_key()
        if sent_key != KEY:
            return self._record(request, 401, _error(api, 401, "invalid x-api-key"), {})
        if errors := pairing_errors(api, body):
            return self._record(request, 400, _error(api, 400, "; ".join(errors)), {})
        if callable(move):
            move = move(request)
        if move.status != 200:
            return self._record(request, move.status, _error(api, move.status, "scripted failure"), move.headers)
        payload = self._reply(api, request, move)
        return self._record(request, 200, payload, {})

    def _record(self, request: Request, status: int, payload: Any, headers: dict[str, str]) -> tuple:
        with self._lock:
            self.answered.append((request, status, payload))
        return status, payload, headers

    def _reply(self, api: str, request: Request, move: Move) -> dict[str, Any]:
        n = next(self._ids)
        calls = []
        for i, c in enumerate(move.calls):
            arguments = c.arguments(request) if callable(c.arguments) else (c.arguments or {})
            calls.append((f"call_{n}_{i}", c.name, arguments, c.raw))
        fresh, output, cached = move.usage
        if api == "anthropic":
            usage = {"input_tokens": fresh, "output_tokens": output, "cache_read_input_tokens": cached,
                     "cache_creation_input_tokens": 0}
            content: list[dict[str, Any]] = [{"type": "text", "text": move.text}] if move.text else []
            content += [{"type": "tool_use", "id": f"toolu_{cid}", "name": name,
                         "input": arguments if raw is None else _anthropic_malformed(arguments)}
                        for cid, name, arguments, raw in calls]
            payload = {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": "claude-standin-1",
                       "content": content, "stop_reason": "tool_use" if calls else "end_turn",
                       "stop_sequence": None, "usage": usage}
        elif api == "chat":
            usage = {"prompt_tokens": fresh + cached, "completion_tokens": output,
                     "total_tokens": fresh + cached + output, "prompt_tokens_details": {"cached_tokens": cached}}
            message: dict[str, Any] = {"role": "assistant", "content": move.text or None}
            if calls:
                message["tool_calls"] = [{"id": cid, "type": "function", "function": {
                    "name": name, "arguments": raw if raw is not None else json.dumps(arguments)}}
                    for cid, name, arguments, raw in calls]
            payload = {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000,
                       "model": "gpt-standin-1", "choices": [{"index": 0, "message": message,
                                                              "finish_reason": "tool_calls" if calls else "stop"}],
                       "usage": usage}
        else:
            usage = {"input_tokens": fresh + cached, "output_tokens": output, "total_tokens": fresh + cached + output,
                     "input_tokens_details": {"cached_tokens": cached},
                     "output_tokens_details": {"reasoning_tokens": 0}}
            output_items: list[dict[str, Any]] = []
            if move.text:
                output_items.append({"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                                     "content": [{"type": "output_text", "text": move.text, "annotations": []}]})
            output_items += [{"type": "function_call", "id": f"fc_{cid}", "call_id": cid, "name": name,
                              "arguments": raw if raw is not None else json.dumps(arguments), "status": "completed"}
                             for cid, name, arguments, raw in calls]
            payload = {"id": f"resp_{n}", "object": "response", "created_at": 1_700_000_000, "status": "completed",
                       "model": "gpt-standin-1", "output": output_items, "usage": usage, "error": None,
                       "incomplete_details": None, "instructions": request.body.get("instructions"), "metadata": {},
                       "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto", "tools": [],
                       "top_p": 1.0}
        with self._lock:
            self.returned_usage.append({"input": fresh, "output": output, "cache_read": cached,
                                        "model": payload["model"]})
        return payload


def _anthropic_malformed(arguments: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's `input` is always an object: a malformed one lacks a required argument and has a wrong type."""
    broken = dict(arguments)
    broken.pop("content", None)
    broken["workflow_id"] = 12345
    return broken


def _error(api: str, status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}.get(status,
                                                                                                  "api_error")
    if api == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": None, "param": None}}

"""A small stand-in for Stripe's API over real HTTP, for the calls the product makes (customers, Checkout Sessions,
Billing Portal sessions). The real `stripe` library is pointed at it (STRIPE_API_BASE); it records every request as
Stripe received it (form-encoded parameters, headers) so tests assert what was sent, and it honours Idempotency-Key
the way Stripe does (the same key on the same path gets the first answer back, and creates nothing new)."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class FakeStripe:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.created: dict[str, list[dict]] = {}  # path → objects actually created (replays excluded)
        self._failures: dict[str, list[tuple[int, dict]]] = {}
        self._replies: dict[tuple[str, str], tuple[int, dict]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeStripe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.created.clear()
            self._failures.clear()
            self._replies.clear()

    def fail(self, path: str, status: int, error_type: str = "api_error", message: str = "boom") -> None:
        """The next request to `path` answers this error (once)."""
        with self._lock:
            self._failures.setdefault(path, []).append((status, {"error": {"type": error_type, "message": message}}))

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    # ---- the server ------------------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self.calls.append(Call(method, path, params, headers))
            key = headers.get("idempotency-key")
            if key and (path, key) in self._replies:
                return self._replies[(path, key)]
            if self._failures.get(path):
                return self._failures[path].pop(0)
            n = next(self._ids)
            if method == "POST" and path == "/v1/customers":
                body: dict[str, Any] = {"id": f"cus_fake{n}", "object": "customer", "name": params.get("name")}
            elif method == "POST" and path == "/v1/checkout/sessions":
                body = {"id": f"cs_test_fake{n}", "object": "checkout.session", "mode": params.get("mode"),
                        "url": f"https://checkout.stripe.com/c/pay/cs_test_fake{n}"}
            elif method == "POST" and path == "/v1/billing_portal/sessions":
                body = {"id": f"bps_fake{n}", "object": "billing_portal.session",
                        "url": f"https://billing.stripe.com/p/session/test_fake{n}"}
            else:
                return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized URL {path}"}}
            self.created.setdefault(path, []).append(body)
            if key:
                self._replies[(path, key)] = (200, body)
            return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                path, _, query = self.path.partition("?")
                params = dict(parse_qsl(raw or query, keep_blank_values=True))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = fake._answer(self.command, path, params, headers)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

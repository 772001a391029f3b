"""A small client of qorch's public /v1 API: what an agent needs, nothing more (never Firestore).

Refusals raise `ApiError` carrying the problem's `code`, `title` and `detail`. Transport failures and 503s are retried
a few times with backoff; every POST that changes something carries an Idempotency-Key, so a retry after a lost
answer never applies a change twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2

log = logging.getLogger("qorch.agents.api")

RETRIES = 4  # after the first attempt: 0.25 + 0.5 + 1 + 2 s of backoff at most (or the server's Retry-After)
MAX_PAUSE = 5.0


class ApiError(Exception):
    """A problem+json refusal (or a transport failure, status 0 and code `unreachable`)."""

    def __init__(self, status: int, code: str, title: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.body = body or {}

    def problem(self) -> dict[str, Any]:
        """What a model (or an MCP host) is told: enough to react, nothing about the request's credentials."""
        out: dict[str, Any] = {"code": self.code, "status": self.status, "title": self.title, "detail": self.detail}
        for extra in ("errors", "allowed_transitions", "handoff_status", "current_version", "agent_id"):
            if extra in self.body:
                out[extra] = self.body[extra]
        return out


@dataclass
class QorchApi:
    """One API base URL (`http://host:port`, with or without `/v1`) and one key. Thread-safe (httpx2's client is)."""

    base_url: str
    api_key: str = field(repr=False)  # never printed: the dataclass repr leaves it out
    timeout: float = 30.0
    _http: httpx2.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        root = self.base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.base_url = root
        self._http = httpx2.Client(base_url=root, timeout=self.timeout,
                                   headers={"Authorization": f"Bearer {self.api_key}",
                                            "User-Agent": "qorch-agents/1"})
        # A bare client for presigned URLs: they carry their own signature and must not get our key.
        self._bare = httpx2.Client(timeout=self.timeout)

    def close(self) -> None:
        self._http.close()
        self._bare.close()

    # ---- the transport ----------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, Any] | None = None,
                keyed: bool = False, timeout: float | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or None); raises ApiError for a refusal. Every call here is safe to repeat, so
        transport failures and 503s are retried: GETs, heartbeats and completes by nature, and the POSTs that
        change something (`keyed`) because they carry one Idempotency-Key across their attempts."""
        headers = {"Idempotency-Key": f"agent-{uuid.uuid4().hex}"} if keyed else {}
        params = {k: v for k, v in (query or {}).items() if v is not None}
        for attempt in range(RETRIES + 1):
            try:
                response = self._http.request(method, f"/v1{path}", json=body, params=params, headers=headers,
                                              timeout=timeout or self.timeout)
            except httpx2.TransportError as exc:
                if attempt < RETRIES:
                    log.warning("qorch API unreachable (%s %s: %s); retrying", method, path, type(exc).__name__)
                    time.sleep(_backoff(attempt))
                    continue
                raise ApiError(0, "unreachable", "The qorch API did not answer", f"{type(exc).__name__}: {exc}") \
                    from exc
            if response.status_code == 503 and attempt < RETRIES:
                time.sleep(_retry_after(response, attempt))
                continue
            return response.status_code, _parse(response)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw)[1]

    # ---- the endpoints an agent uses ------------------------------------------------------------------------

    def claim(self, agent_id: str, *, roles: list[str] | None = None, lease_seconds: int | None = None,
              wait_seconds: int | None = None) -> dict[str, Any] | None:
        """`{handoff, workflow}`, or None when there is no work (204)."""
        body: dict[str, Any] = {"agent_id": agent_id}
        if roles is not None:
            body["roles"] = roles
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        if wait_seconds is not None:
            body["wait_seconds"] = wait_seconds
        # The long poll may legitimately take wait_seconds: the read timeout must outlast it.
        status, answer = self.request("POST", "/handoffs/claim", body=body, keyed=True,
                                      timeout=self.timeout + (wait_seconds or 0))
        return None if status == 204 else answer

    def heartbeat(self, workflow_id: str, handoff_id: str, agent_id: str, *,
                  usage: list[dict[str, Any]] | None = None, lease_seconds: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"agent_id": agent_id}
        if usage:
            body["usage"] = usage
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return self._json("POST", f"/workflows/{workflow_id}/handoffs/{handoff_id}/heartbeat", body=body)

    def release(self, workflow_id: str, handoff_id: str, agent_id: str, note: str | None = None) -> dict[str, Any]:
        """Give a hand-off back, with a note for the next agent (kept on the hand-off as `release_note`)."""
        body: dict[str, Any] = {"agent_id": agent_id, **({"note": note} if note else {})}
        return self._json("POST", f"/workflows/{workflow_id}/handoffs/{handoff_id}/release", body=body, keyed=True)

    def context(self, workflow_id: str, *, events: int | None = None, page_token: str | None = None) -> dict:
        return self._json("GET", f"/workflows/{workflow_id}/context",
                          query={"events": events, "page_token": page_token})

    def agent_tools(self, fmt: str) -> list[dict[str, Any]]:
        return self._json("GET", "/agent-tools", query={"format": fmt})["tools"]

    def workflows(self, *, role: str | None = None, state: str | None = None, limit: int = 100) -> list[dict]:
        """The newest-updated first page of the account's workflows, optionally at one role or state."""
        return self._json("GET", "/workflows", query={"role": role, "state": state, "limit": limit})["workflows"]

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        return self._json("GET", f"/workflows/{workflow_id}")

    def create_workflow(self, **fields: Any) -> dict[str, Any]:
        return self._json("POST", "/workflows", body=fields, keyed=True)

    def transition(self, workflow_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/workflows/{workflow_id}/transitions", body=body, keyed=True)

    def events(self, workflow_id: str, *, page_token: str | None = None, limit: int | None = None) -> dict:
        return self._json("GET", f"/workflows/{workflow_id}/events",
                          query={"page_token": page_token, "limit": limit})

    def handoffs(self, workflow_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        return self._json("GET", f"/workflows/{workflow_id}/handoffs", query={"limit": limit})["handoffs"]

    def artifacts(self, workflow_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        return self._json("GET", f"/workflows/{workflow_id}/artifacts", query={"limit": limit})["artifacts"]

    def artifact(self, workflow_id: str, artifact_id: str) -> dict[str, Any]:
        return self._json("GET", f"/workflows/{workflow_id}/artifacts/{artifact_id}")

    def upload(self, workflow_id: str, name: str, data: bytes, content_type: str) -> dict[str, Any]:
        """Declare (size and SHA-256), PUT the bytes to the presigned URL with exactly its headers, complete: the
        AVAILABLE artifact."""
        created = self._json("POST", f"/workflows/{workflow_id}/artifacts",
                             body={"name": name, "content_type": content_type, "size_bytes": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest()}, keyed=True)
        upload = created["upload"]
        self._presigned(upload["method"], upload["url"], headers=upload.get("headers") or {}, data=data)
        done = self._json("POST", f"/workflows/{workflow_id}/artifacts/{created['artifact']['id']}/complete")
        return done["artifact"]

    def download(self, workflow_id: str, artifact_id: str) -> tuple[dict[str, Any], bytes]:
        detail = self.artifact(workflow_id, artifact_id)
        if detail.get("download") is None:
            raise ApiError(409, "upload_incomplete", "The artifact is not available",
                           f"Artifact {artifact_id} is {detail['artifact']['status']}.")
        return detail["artifact"], self._presigned("GET", detail["download"]["url"])

    def _presigned(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                   data: bytes | None = None) -> bytes:
        for attempt in range(RETRIES + 1):
            try:
                response = self._bare.request(method, url, headers=headers, content=data)
            except httpx2.TransportError as exc:
                if attempt < RETRIES:
                    time.sleep(_backoff(attempt))
                    continue
                raise ApiError(0, "unreachable", "The object store did not answer", type(exc).__name__) from exc
            if response.status_code >= 500 and attempt < RETRIES:
                time.sleep(_backoff(attempt))
                continue
            if response.status_code >= 400:
                raise ApiError(response.status_code, "object_store_refused", "The object store refused the request",
                               response.text[:300])
            return response.content
        raise AssertionError("unreachable")


def _parse(response: httpx2.Response) -> Any:
    mimetype = response.headers.get("content-type", "").split(";")[0].strip()
    body = response.json() if response.content and mimetype.endswith("json") else None
    if response.status_code >= 400:
        problem = body if isinstance(body, dict) else {}
        raise ApiError(response.status_code, str(problem.get("code") or "http_error"),
                       str(problem.get("title") or response.reason_phrase),
                       str(problem.get("detail") or response.text[:300]), problem)
    return body


def _backoff(attempt: int) -> float:
    return min(0.25 * 2 ** attempt, MAX_PAUSE)


def _retry_after(response: httpx2.Response, attempt: int) -> float:
    try:
        return min(float(response.headers.get("retry-after", "")), MAX_PAUSE)
    except ValueError:
        return _backoff(attempt)

"""What the hand-off and artifact tests share: an agent's calls (claim, heartbeat, release, transition holding a
claim), and uploads and downloads over real HTTP to presigned URLs with an ordinary client (urllib)."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.helpers import Api, Response


@dataclass
class Agent:
    api: Api
    key: str
    agent_id: str

    def claim(self, expect: int | None = None, **fields: Any) -> Response:
        r = self.api.post("/v1/handoffs/claim", {"agent_id": self.agent_id, **fields}, self.key)
        if expect is not None:
            assert r.status == expect, r.body
        return r

    def heartbeat(self, workflow_id: str, handoff_id: str, *, headers: dict[str, str] | None = None,
                  **fields: Any) -> Response:
        return self.api.post(f"/v1/workflows/{workflow_id}/handoffs/{handoff_id}/heartbeat",
                             {"agent_id": self.agent_id, **fields}, self.key, headers=headers)

    def release(self, workflow_id: str, handoff_id: str, **fields: Any) -> Response:
        return self.api.post(f"/v1/workflows/{workflow_id}/handoffs/{handoff_id}/release",
                             {"agent_id": self.agent_id, **fields}, self.key)

    def move(self, workflow_id: str, to: str, *, headers: dict[str, str] | None = None, **fields: Any) -> Response:
        return self.api.post(f"/v1/workflows/{workflow_id}/transitions",
                             {"to": to, "agent_id": self.agent_id, **fields}, self.key, headers=headers)

    def upload(self, workflow_id: str, name: str, data: bytes, content_type: str = "text/markdown") -> dict:
        """Declare, PUT the bytes to the presigned URL, complete: the AVAILABLE artifact."""
        created = self.api.post(f"/v1/workflows/{workflow_id}/artifacts",
                                {"name": name, "content_type": content_type, "size_bytes": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest()}, self.key)
        assert created.status == 201, created.body
        put(created.body["upload"], data)
        done = self.api.post(f"/v1/workflows/{workflow_id}/artifacts/{created.body['artifact']['id']}/complete",
                             None, self.key)
        assert done.status == 200, done.body
        assert done.body["artifact"]["status"] == "AVAILABLE"
        return done.body["artifact"]

    def download(self, workflow_id: str, artifact_id: str) -> bytes:
        r = self.api.get(f"/v1/workflows/{workflow_id}/artifacts/{artifact_id}", self.key)
        assert r.status == 200, r.body
        return get(r.body["download"]["url"])


def put(upload: dict, data: bytes) -> int:
    """PUT `data` to a presigned upload with exactly the headers it names."""
    assert upload["method"] == "PUT"
    request = urllib.request.Request(upload["url"], data=data, method="PUT", headers=upload["headers"])
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code

"""Idempotency-Key: a repeated POST gets the first response back and changes nothing.

Records live under the account (scope), keyed by the SHA-256 of the key, and are written in the same commit as
the change they belong to, so a change and its record land together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.firestore import Doc
from shared.domain.errors import IdempotencyKeyReused, ValidationFailed

TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    key_hash: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """A POST's response body, and whether it is a replay of an earlier one."""

    body: dict[str, Any]
    replayed: bool = False


def parse(header: str | None, *, method: str, path: str, body: Any) -> IdempotencyRequest | None:
    if header is None:
        return None
    if not 1 <= len(header) <= 255 or not all(0x20 <= ord(c) <= 0x7E for c in header):
        raise ValidationFailed([{"field": "header:Idempotency-Key", "message": "must be 1..255 printable ASCII"}])
    canonical = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"))
    return IdempotencyRequest(
        key_hash=hashlib.sha256(header.encode()).hexdigest(),
        request_hash=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def replay(doc: Doc | None, request: IdempotencyRequest, now: datetime) -> Outcome | None:
    """The recorded outcome if this key was used for this very request; None if the key is new (or expired)."""
    if doc is None or doc.data is None:
        return None
    record = doc.data
    if record["expires_at"] <= now:
        return None
    if record["request_hash"] != request.request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was first used with another method, path or body.")
    return Outcome(body=json.loads(record["body"]), replayed=True)


def record(request: IdempotencyRequest, outcome: Outcome, now: datetime) -> dict[str, Any]:
    # The body is kept as JSON text: exactly what was sent, and no index on its fields.
    return {
        "request_hash": request.request_hash,
        "body": json.dumps(outcome.body, separators=(",", ":")),
        "created_at": now,
        "expires_at": now + TTL,
    }

"""Opaque page tokens for cursor pagination. A token carries its listing's scope (which listing, which filters), so
a token given out by one listing is refused by another with 422 rather than silently paging the wrong set."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shared.domain.errors import ValidationFailed


def encode_page_token(scope: str, cursor: dict[str, Any]) -> str:
    data = {"s": scope, **cursor}
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str, scope: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("s") != scope:
            raise ValueError
        return data
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed([{"field": "query:page_token",
                                 "message": "not a token this listing gave out (or filters changed)"}]) from exc

"""The edge of the functions that Pub/Sub messages trigger (Cloud Scheduler publishes them; each arrives as a
CloudEvent): the message's JSON, and the instance's store, as `shared.http.endpoint` gives them to HTTP functions."""

from __future__ import annotations

import base64
from typing import Any

from shared.adapters.firestore import Store, get_store


def message_json(cloud_event: Any) -> bytes:
    """The JSON a Pub/Sub CloudEvent carries (`data.message.data` is base64); empty means `{}`."""
    data = cloud_event.get_data() if hasattr(cloud_event, "get_data") else cloud_event
    message = (data or {}).get("message") or {}
    return base64.b64decode(message.get("data") or b"").strip() or b"{}"


def store() -> Store:
    return get_store()

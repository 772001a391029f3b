"""The scheduled cleanup, a CloudEvent function: Cloud Scheduler publishes to the `qorch-cleanup` topic every 15
minutes and each message runs `shared.services.cleanup` once. The message may carry a JSON `CleanupRequest`
(`{"tasks": [...], "max_documents": N, "max_seconds": S}`); the scheduler sends `{}`. One JSON log line per run."""

from __future__ import annotations

from typing import Any

import pydantic

from shared.http import pubsub
from shared.runtime import logs
from shared.services import cleanup as service


def parse(cloud_event: Any) -> service.CleanupRequest:
    """The request in a Pub/Sub CloudEvent; an empty message means the defaults."""
    return service.CleanupRequest.model_validate_json(pubsub.message_json(cloud_event))


def cleanup(cloud_event: Any) -> None:
    try:
        request = parse(cloud_event)
    except (pydantic.ValidationError, ValueError) as exc:
        # A malformed trigger is not retried (it would fail again): say why and do nothing.
        logs.emit({"severity": "ERROR", "message": f"cleanup: refused the trigger's message: {exc}",
                   "function": "cleanup"})
        return
    report = service.run(pubsub.store(), budget=request.budget(), tasks=request.tasks)
    logs.emit(report.log_line())

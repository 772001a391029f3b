"""The functions that are not HTTP endpoints: each is triggered by a Pub/Sub topic (delivered as a CloudEvent) that
Cloud Scheduler publishes to. `main.py`, `serverless.yml`, `infra/deploy.sh` and the deployment checks read this
table, as they read `shared.http.routes.ROUTES` for the HTTP functions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventFunction:
    function: str
    topic: str  # the Pub/Sub topic whose messages trigger it
    schedule: str  # the Cloud Scheduler cron (UTC) that publishes to the topic
    summary: str


EVENT_FUNCTIONS: tuple[EventFunction, ...] = (
    EventFunction("cleanup", topic="qorch-cleanup", schedule="*/15 * * * *",
                  summary="Expired leases, stale workflows, retention and expired records, within budgets"),
)

BY_FUNCTION: dict[str, EventFunction] = {f.function: f for f in EVENT_FUNCTIONS}

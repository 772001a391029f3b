"""The one clock the services read (UTC). Domain code never reads it: the services pass `now` in, so a test can
move time (lease expiry) by patching `shared.runtime.clock.now` alone."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)

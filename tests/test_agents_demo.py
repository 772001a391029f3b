"""`make demo` as a test: the same command (`python -m tools.demo`), on this session's emulator and moto, in a
project of its own. It must end COMPLETED with one retry, every artifact downloadable and a total cost, within its
own one-minute limit; the store then shows the event log intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.domain.models import Workflow
from tests.helpers import assert_event_log

ROOT = Path(__file__).resolve().parent.parent


def test_make_demo(emulator, s3, store, project_id):
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator.address, "GOOGLE_CLOUD_PROJECT": project_id}
    done = subprocess.run([sys.executable, "-m", "tools.demo", "--fresh", "--timeout", "60"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "COMPLETED in" in out and "with one retry" in out
    assert "TESTING → IMPLEMENTATION" in out and "(retry)" in out
    for name in ("requirements.md", "plan.md", "design.md", "change.patch", "test-report.md",
                 "verification-report.md", "deployment-record.md"):
        assert name in out
    assert "Total cost: $" in out and "BAD" not in out

    (snap,) = list(store.client.collection_group("workflows").stream())
    workflow = Workflow.model_validate(snap.to_dict())
    assert (workflow.state, workflow.retry_count) == ("COMPLETED", 1)
    assert_event_log(store, workflow.account_id, workflow.id)
    keys = [k.to_dict() for k in store.client.collection("api_keys").stream()]
    assert keys and all(k["revoked"] for k in keys if k["account_id"] == workflow.account_id), \
        "the demo's keys are revoked on the way out"

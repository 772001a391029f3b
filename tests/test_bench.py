"""`make bench`, small: every bench module runs end to end at a fraction of its size (QORCH_BENCH_SCALE), so a change
that breaks a bench's code or the counts it checks (RPCs per request, no lost update, the event log's invariants)
fails here rather than at the next `make bench`. Nothing about time is asserted: the figures are `make bench`'s."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_bench_runs_and_its_checks_hold(emulator):
    modules = sorted(m.name for m in pkgutil.iter_modules([str(ROOT / "bench")]) if not m.name.startswith("_"))
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator.address, "QORCH_BENCH_SCALE": "0.02",
           "QORCH_BENCH_TX_SECONDS": "2", "QORCH_STORE_TIMEOUT_SECONDS": "30"}
    env.pop("QORCH_KEY_CACHE_SECONDS", None)
    run = subprocess.run([sys.executable, "-m", "bench"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert [line.removeprefix("== bench.") for line in run.stdout.splitlines() if line.startswith("== bench.")] \
        == modules
    assert "ratio service/floor at p50" in run.stdout and "ratio to the floor at p50" in run.stdout

"""Run the scheduled cleanup once, here, against the configured Firestore (the emulator when
FIRESTORE_EMULATOR_HOST is set): the same service the deployed `cleanup` function runs.

    python -m tools.cleanup [--tasks stale,records] [--max-documents 5000] [--max-seconds 240]

Prints the run's JSON log line; exits 1 if the store could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared.adapters.firestore import get_store
from shared.services import cleanup as service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cleanup", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(service.TASKS), help="comma-separated: " + ",".join(service.TASKS))
    parser.add_argument("--max-documents", type=int, default=service.Budget.max_documents)
    parser.add_argument("--max-seconds", type=float, default=service.Budget.max_seconds)
    args = parser.parse_args(argv)
    if not os.environ.get("FIRESTORE_EMULATOR_HOST") and not os.environ.get("GOOGLE_CLOUD_PROJECT"):
        print("error: set FIRESTORE_EMULATOR_HOST (make run prints it) or GOOGLE_CLOUD_PROJECT (a real project, "
              "with gcloud auth application-default login)", file=sys.stderr)
        return 2
    try:
        request = service.CleanupRequest(tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
                                         max_documents=args.max_documents, max_seconds=args.max_seconds)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = service.run(get_store(), budget=request.budget(), tasks=request.tasks)
    print(json.dumps(report.log_line(), default=str))
    return 1 if report.stopped_by == "unavailable" else 0


if __name__ == "__main__":
    sys.exit(main())

"""Serve the local router the way Cloud Functions serves a function: functions-framework's production server
(gunicorn: one worker process with a pool of threads, HTTP/1.1 keep-alive, TCP_NODELAY), not werkzeug's development
server, which starts a thread for every connection and closes each connection after one answer (measured by
`make bench`: a transition took about 2.6 ms longer on this machine, against a 5-6 ms floor).

    python -m tools.serve PORT      (`make run` runs it, in a process of its own; so does bench/transitions.py)

A process of its own because gunicorn forks its worker, and a process that already holds gRPC channels (make run's
has bootstrapped the dev account) must not fork them: this one starts fresh, and its worker opens its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Request threads of the worker: a claim may wait up to 20 s for work (long poll) holding one, so enough that a few
# agents waiting never keep a page or another agent out (idle keep-alive connections hold none).
THREADS = "64"


def main(port: int) -> None:
    from functions_framework._http import create_server

    from tools.router import create_app

    # What `functions-framework --target=...` runs in production when debug is off (its GunicornApplication).
    create_server(create_app(), debug=False).run("127.0.0.1", port)


def start(port: int, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
    """`python -m tools.serve PORT` in a new process, with `env` (default: this one's) and THREADS unless set."""
    environ = dict(os.environ if env is None else env)
    environ.setdefault("THREADS", THREADS)
    return subprocess.Popen([sys.executable, "-m", "tools.serve", str(port)], cwd=ROOT, env=environ,
                            **popen)  # type: ignore[call-overload]


if __name__ == "__main__":
    main(int(sys.argv[1]))

"""`make run`'s server (tools/serve.py): the router under functions-framework's production server, in a process of its
own, against the emulator: it answers keyed calls and problems like the functions do, keeps a client's connection for
its next request (werkzeug's development server closes every one), and stops on SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time

from shared.domain.state_machine import Role
from shared.services import accounts
from tools import serve


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ask(conn: http.client.HTTPConnection, path: str, key: str | None = None) -> tuple[int, dict, dict]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())


def test_make_runs_server_answers_and_keeps_the_connection(store, project_id):
    account = accounts.create_account(store, "Served", entitled=True)
    key, _ = accounts.create_key(store, account.id, [Role.OWNER], name="serve")
    port = _free_port()
    server = serve.start(port, {**os.environ, "GOOGLE_CLOUD_PROJECT": project_id}, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if \
                    server.poll() is not None else "the server did not listen within 120 s"
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, headers, body = _ask(conn, "/v1/account", key)
        assert status == 200 and body["id"] == account.id, body
        first = conn.sock
        assert first is not None and headers.get("connection", "").lower() != "close"
        status, headers, body = _ask(conn, "/v1/workflows/wf_missing", key)
        assert (status, body["code"]) == (404, "not_found")
        assert headers["content-type"].startswith("application/problem+json")
        status, _, body = _ask(conn, "/v1/account")
        assert (status, body["code"]) == (401, "unauthenticated")
        assert conn.sock is first, "the same connection served all three"
        conn.close()
    finally:
        server.terminate()
        assert server.wait(timeout=60) is not None

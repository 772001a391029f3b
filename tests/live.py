"""Real sockets for the tests that need them (and the bench): the local router served over HTTP in a thread, and a
TCP proxy between a Firestore client and the emulator that can be cut, black-holed or made deaf to replies.

Nothing here fakes a component: the proxy forwards real gRPC bytes to the real emulator, and the server is the
real router app behind werkzeug's real HTTP server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from google.cloud import firestore
from werkzeug.serving import make_server

from shared.adapters.firestore import firestore_client
from tests.helpers import Response

# ---- the local router over real HTTP ------------------------------------------------------------------------------


class LiveServer:
    """`app` served on a free loopback port by a threaded werkzeug server, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def request(self, method: str, path: str, *, key: str | None = None, body: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
        """One request on a new connection. A client-side timeout raises (`TimeoutError`): a hang is a failure."""
        hdrs = dict(headers or {})
        if key:
            hdrs["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            text = r.read().decode()
            mimetype = (r.getheader("Content-Type") or "").split(";")[0].strip()
            parsed = json.loads(text) if text and mimetype in ("application/json", "application/problem+json") \
                else text
            if r.status >= 400:
                assert mimetype == "application/problem+json", (r.status, text)
                assert parsed["status"] == r.status and parsed["code"], parsed
            return Response(r.status, dict(r.getheaders()), parsed)
        finally:
            conn.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- a cuttable TCP proxy -----------------------------------------------------------------------------------------

UP = "up"  # forward both ways
REFUSE = "refuse"  # no listener: connecting is refused (the store is down)
BLACKHOLE = "blackhole"  # connections are accepted and what they send is read and dropped; nothing answers
DEAF = "deaf"  # requests reach the store, replies never come back (a commit may land unbeknown to the client)


class TcpProxy:
    """A loopback TCP forwarder to `upstream` ("host:port"), in-process threads.

    `cut()` closes the listener and every live connection (connecting is then refused); `blackhole()` and `deaf()`
    drop live connections and switch what new ones do; `restore()` forwards again on the same port.
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.mode = UP
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop_accepting = threading.Event()
        self._acceptor: threading.Thread | None = None
        self.port = 0
        self._listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---- control --------------------------------------------------------------------------------------------

    def cut(self) -> None:
        """The store is gone: close the listener and every live connection."""
        with self._lock:
            self.mode = REFUSE
        self._close_listener()
        self._drop_connections()

    def blackhole(self) -> None:
        """The store accepts connections and never answers (a network partition, a stuck server)."""
        self._switch(BLACKHOLE)

    def deaf(self) -> None:
        """From now on the store gets every request but no reply gets back. Live connections are kept, so a request
        already on its way (e.g. a commit after a read) is delivered."""
        with self._lock:
            self.mode = DEAF

    def restore(self) -> None:
        self._switch(UP)

    def close(self) -> None:
        self._close_listener()
        self._drop_connections()

    def _switch(self, mode: str) -> None:
        self._drop_connections()
        with self._lock:
            self.mode = mode
        if self._listener is None:
            self._listen()

    # ---- plumbing -------------------------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop_accepting = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, args=(listener, self._stop_accepting),
                                          name="proxy-accept", daemon=True)
        self._acceptor.start()

    def _close_listener(self) -> None:
        listener, acceptor = self._listener, self._acceptor
        self._listener = self._acceptor = None
        if listener is None:
            return
        self._stop_accepting.set()
        if acceptor is not None:
            acceptor.join(timeout=5)
        listener.close()

    def _drop_connections(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.update(socks)

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                mode = self.mode
            if mode == BLACKHOLE:
                self._track(client)
                threading.Thread(target=self._pump, args=(client, None, False), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._track(client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None, is_reply: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if dst is None or (is_reply and self.mode == DEAF):
                    continue  # read and dropped
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
            src.close()


@contextlib.contextmanager
def firestore_client_via(address: str, project: str) -> Iterator[firestore.Client]:
    """A Firestore client that talks to the emulator at `address` (the client reads FIRESTORE_EMULATOR_HOST when it
    is constructed, so the variable is only changed around the construction)."""
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = address
    try:
        client = firestore_client(project)
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    try:
        yield client
    finally:
        client.close()

"""Start and stop the real Cloud Firestore emulator on a free port (used by `make run`, the tests and the bench).

The emulator is `gcloud` plus a Java child: it runs in its own process group so that stopping it stops both.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Self


class MissingPrerequisite(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_prerequisites() -> None:
    """Say exactly what to install when something the emulator needs is absent."""
    missing = []
    if shutil.which("gcloud") is None:
        missing.append("the Google Cloud SDK (gcloud): https://cloud.google.com/sdk/docs/install")
    if shutil.which("java") is None:
        missing.append("Java 17 or newer (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)")
    if missing:
        raise MissingPrerequisite(
            "The Firestore emulator needs:\n  - " + "\n  - ".join(missing)
            + "\nthen: gcloud components install cloud-firestore-emulator"
            + "\n(or set FIRESTORE_EMULATOR_HOST=host:port to use an emulator you run yourself)."
        )


@dataclass
class Child:
    """A local server run as a child in its own process group, so that stopping it stops its children too (gcloud's
    Java, firebase-tools' node workers), with its output in a log file that errors quote."""

    process: subprocess.Popen | None = None
    log_path: str = ""
    name: ClassVar[str] = "the process"
    stop_grace: ClassVar[float] = 10.0  # seconds between SIGTERM and SIGKILL

    def ready(self) -> bool:
        raise NotImplementedError

    def _await_ready(self, timeout: float, poll: float, if_it_exits: str = "") -> Self:
        assert self.process is not None, "start the process first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MissingPrerequisite(f"{self.name} exited at start (code {self.process.returncode}). Its log, "
                                          f"{self.log_path}:\n{self._tail()}{if_it_exits}")
            if self.ready():
                return self
            time.sleep(poll)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s; log: {self.log_path}")

    def _tail(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-20:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=self.stop_grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)


@dataclass
class Emulator(Child):
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    name: ClassVar[str] = "The Firestore emulator"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 90.0) -> Emulator:
        check_prerequisites()
        log = tempfile.NamedTemporaryFile(prefix="firestore-emulator-", suffix=".log", delete=False)
        self.log_path = log.name
        self.process = subprocess.Popen(
            ["gcloud", "emulators", "firestore", "start", f"--host-port={self.address}", "--quiet"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        return self._await_ready(timeout, 0.2, "\nIf the component is missing: "
                                               "gcloud components install cloud-firestore-emulator")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/", timeout=1) as response:
                return response.read().strip() == b"Ok"
        except OSError:
            return False

    def wipe(self, project: str) -> None:
        url = f"http://{self.address}/emulator/v1/projects/{project}/databases/(default)/documents"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).read()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def ensure_emulator() -> Iterator[str]:
    """The emulator named by FIRESTORE_EMULATOR_HOST, else one started here (and the variable set) for the block."""
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        yield os.environ["FIRESTORE_EMULATOR_HOST"]
        return
    with Emulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
        try:
            yield emulator.address
        finally:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)

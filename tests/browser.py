"""What the dashboard's browser tests share: Debian's Chromium driven by playwright, `make run`'s stack in a
subprocess (the router serving the dashboard and the API over the Firestore emulator, moto and the Firebase Auth
emulator of tools/authemulator.py), people signing in with an email link through the Auth emulator, and
screenshots kept in test-output/.

Nothing is skipped for want of a browser: a missing Chromium fails the test with the command that installs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tools.authemulator import AuthEmulator
from tools.emulator import free_port

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output" / "dashboard"
CHROMIUM = os.environ.get("QORCH_CHROMIUM", "/usr/bin/chromium")
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
# A headless browser in a test talks to this machine only: no updates, no sync, no field trials, no metrics.
CHROMIUM_ARGS = [
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--metrics-recording-only", "--no-pings", "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--disable-breakpad", "--password-store=basic", "--use-mock-keychain",
]


def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"The dashboard's browser tests need Debian's Chromium at {CHROMIUM}. Install it (as root):\n"
                    f"  {INSTALL_CHROMIUM}\n(`make test` does this itself when it runs as root.)", pytrace=False)
    return CHROMIUM


def sign_in_link(auth: AuthEmulator, email: str) -> str:
    """The newest email sign-in link the Auth emulator "sent" to `email` (it sends none; it keeps them)."""
    with urllib.request.urlopen(f"{auth.url}/emulator/v1/projects/{auth.project}/oobCodes", timeout=5) as r:
        codes = [c for c in json.load(r)["oobCodes"] if c["email"] == email and c["requestType"] == "EMAIL_SIGNIN"]
    assert codes, f"no sign-in link was sent to {email}"
    return codes[-1]["oobLink"]


# ---- make run's stack ------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """`python -m tools.run` (what `make run` runs) in a subprocess of its own, on free ports."""

    firestore: str
    auth: AuthEmulator
    project: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    owner_key: str = ""
    log_path: str = ""
    env: dict[str, str] = field(default_factory=dict)  # more configuration for this stack

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> Stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QORCH_S3_", "STRIPE_"))}
        env.update(PORT=str(self.port), FIRESTORE_EMULATOR_HOST=self.firestore, GOOGLE_CLOUD_PROJECT=self.project,
                   FIREBASE_AUTH_EMULATOR_HOST=self.auth.address, QORCH_FIREBASE_PROJECT=self.auth.project,
                   QORCH_STORE_TIMEOUT_SECONDS="10", PYTHONUNBUFFERED="1")
        env.update(self.env)
        log = tempfile.NamedTemporaryFile(prefix="qorch-run-", suffix=".log", delete=False)
        self.log_path = log.name
        self.process = subprocess.Popen([sys.executable, "-m", "tools.run"], cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"make run's stack exited:\n{Path(self.log_path).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/config.json", timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError(f"make run's stack did not answer within {timeout:.0f}s")
        lines = Path(self.log_path).read_text().splitlines()
        self.owner_key = next(line.strip() for line in lines if line.strip().startswith("qo_"))
        return self

    def stop(self) -> None:
        if self.log_path and Path(self.log_path).exists():  # in the test's captured output, shown if it failed
            print(f"make run's stack on port {self.port}, the end of its log:",
                  *Path(self.log_path).read_text(errors="replace").splitlines()[-40:], sep="\n  ")
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # tools.run stops moto (and what it started) on SIGTERM
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def api(self, method: str, path: str, *, key: str | None = None, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """A call as a program makes it (the tests' agents, and forged requests)."""
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if key:
            hdrs["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + "/v1" + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def put_bytes(self, url: str, data: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, data=data, method="PUT", headers=headers)
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status


# ---- the browser -------------------------------------------------------------------------------------------------


@dataclass
class Watch:
    """What a page did that a person would notice: console errors, uncaught exceptions, failed requests."""

    problems: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.problems.append(f"console.{m.type}: {m.text} @ {page.url}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e} @ {page.url}"))
        page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.method} {r.url} ({r.failure}) @ {page.url}")
            if not r.url.startswith("data:") and r.failure != "net::ERR_ABORTED" else None)
        # ERR_ABORTED: the page was left while a request was on its way (a click on a link); nobody sees that.


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")  # else the sticky header is drawn where the page was scrolled to
    page.screenshot(path=str(path), full_page=full_page)
    return path


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

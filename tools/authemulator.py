"""Start and stop the Firebase Authentication emulator (firebase-tools from npm, pinned in package.json and
package-lock.json, installed into node_modules by `npm ci`: `make run` and `make test` do it) on free ports, and
talk to it as a browser and an operator would (sign up, verify an email, sign in: a person's ID token).

It runs offline under a `demo-` project (no Google project is touched). Its tokens are unsigned (`alg: none`);
the API accepts them only while FIREBASE_AUTH_EMULATOR_HOST is set, which production refuses
(`shared.runtime.config.Settings`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tools.emulator import Child, MissingPrerequisite, free_port

ROOT = Path(__file__).resolve().parent.parent
FIREBASE = ROOT / "node_modules" / ".bin" / "firebase"
PROJECT = "demo-qorch"  # `demo-` ids are offline-only by construction


@dataclass
class AuthEmulator(Child):
    project: str = PROJECT
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    name: ClassVar[str] = "The Firebase Auth emulator"
    stop_grace: ClassVar[float] = 15.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = 180.0) -> AuthEmulator:
        return self.launch().wait(timeout)

    def launch(self) -> AuthEmulator:
        """Start the process and return at once (it takes 20-50 s to answer: start other things meanwhile)."""
        if not FIREBASE.exists():
            raise MissingPrerequisite(
                "The Firebase Auth emulator (firebase-tools) is not installed: run `npm ci` in the repository "
                "(Node.js 20+; Debian/Ubuntu: apt-get install nodejs npm). `make run` and `make test` do it.")
        workdir = tempfile.mkdtemp(prefix="auth-emulator-")
        # Every port the suite would take by default (hub 4400, logging 4500, UI 4000) is a free one, or off.
        (Path(workdir) / "firebase.json").write_text(json.dumps({"emulators": {
            "auth": {"host": self.host, "port": self.port},
            "hub": {"host": self.host, "port": free_port()},
            "logging": {"host": self.host, "port": free_port()},
            "ui": {"enabled": False},
            "singleProjectMode": True,
        }}))
        log = open(Path(workdir) / "emulator.log", "w")  # the child writes it for its whole life
        self.log_path = log.name
        # CI=1: no "message of the day" fetch, NO_UPDATE_NOTIFIER: no npm registry check (both only slow it offline).
        env = {**os.environ, "CI": "1", "NO_UPDATE_NOTIFIER": "1"}
        env.pop("FIREBASE_AUTH_EMULATOR_HOST", None)
        self.process = subprocess.Popen(
            [str(FIREBASE), "emulators:start", "--only", "auth", "--project", self.project,
             "--config", str(Path(workdir) / "firebase.json")],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        return self

    def wait(self, timeout: float = 180.0) -> AuthEmulator:
        return self._await_ready(timeout, 0.25)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/", timeout=1) as response:
                return json.loads(response.read()).get("authEmulator", {}).get("ready") is True
        except (OSError, ValueError):
            return False

    def __enter__(self) -> AuthEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the Identity Toolkit REST API, as the emulator serves it -------------------------------------------------

    def _call(self, path: str, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if admin:
            headers["Authorization"] = "Bearer owner"  # the emulator's stand-in for an admin credential
        request = urllib.request.Request(f"{self.url}/identitytoolkit.googleapis.com/v1/{path}",
                                         data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"Auth emulator {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def create_user(self, email: str, password: str, *, uid: str | None = None, verified: bool = False) -> str:
        """An account made as an operator would (any uid, email already verified or not); its uid."""
        body: dict[str, Any] = {"email": email, "password": password, "emailVerified": verified}
        if uid:
            body["localId"] = uid
        return self._call(f"projects/{self.project}/accounts", body, admin=True)["localId"]

    def ensure_user(self, email: str, password: str, *, uid: str, verified: bool = True) -> str:
        try:
            return self.create_user(email, password, uid=uid, verified=verified)
        except RuntimeError as exc:
            if "DUPLICATE" not in str(exc) and "EMAIL_EXISTS" not in str(exc):
                raise
            return uid

    def sign_up(self, email: str, password: str) -> dict[str, Any]:
        """What a browser's createUserWithEmailAndPassword does: {localId, idToken, ...} (email not verified)."""
        return self._call("accounts:signUp?key=local", {"email": email, "password": password,
                                                         "returnSecureToken": True})

    def verify_email(self, uid: str) -> None:
        """What clicking the verification link does."""
        self._call(f"projects/{self.project}/accounts:update", {"localId": uid, "emailVerified": True}, admin=True)

    def sign_in(self, email: str, password: str) -> str:
        """What signInWithEmailAndPassword does: a fresh ID token."""
        return self._call("accounts:signInWithPassword?key=local", {"email": email, "password": password,
                                                                     "returnSecureToken": True})["idToken"]

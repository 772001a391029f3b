"""`make run`: the whole product on this machine.

Starts the Firestore emulator on a free port (unless FIRESTORE_EMULATOR_HOST is set) and the Firebase Auth emulator
(unless FIREBASE_AUTH_EMULATOR_HOST is set; project `demo-qorch`), makes sure the dev account (plan `dev`, entitled),
its owner key (kept in .qorch/dev-api-key, so it survives restarts) and a dev person who owns it exist, and serves
every HTTP function under its /v1 path on http://127.0.0.1:${PORT:-8080}, with functions-framework's production
server as Cloud Functions does (tools/serve.py). Ctrl-C stops all of it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.authemulator import AuthEmulator
from tools.emulator import Emulator, MissingPrerequisite

ROOT = Path(__file__).resolve().parent.parent
KEY_FILE = ROOT / ".qorch" / "dev-api-key"
STACK_FILE = ROOT / ".qorch" / "stack.json"
DEV_ACCOUNT = "acct_dev"
# A person who owns the dev account, made in the Auth emulator at each start (its data lives in memory).
DEV_PERSON = {"uid": "dev-owner", "email": "dev@qorch.local", "password": "qorch-dev"}


def bootstrap_dev_account() -> str:
    """Idempotent: the same key across restarts, re-registered if the emulator forgot it."""
    from shared.adapters.firestore import get_store
    from shared.domain.state_machine import Role
    from shared.runtime.config import config
    from shared.services import accounts

    store = get_store()
    if not store.get(store.account(DEV_ACCOUNT)).exists:
        accounts.create_account(store, "Local development", plan="dev", entitled=True, account_id=DEV_ACCOUNT)
    secret = KEY_FILE.read_text().strip() if KEY_FILE.exists() else None
    if secret is None or accounts.find_key(store, secret) is None:
        secret, _ = accounts.create_key(store, DEV_ACCOUNT, [Role.OWNER], name="make run",
                                        env=config().key_env, secret=secret)
        KEY_FILE.parent.mkdir(exist_ok=True)
        KEY_FILE.write_text(secret + "\n")
        KEY_FILE.chmod(0o600)
    return secret


def bootstrap_dev_person(auth_emulator: AuthEmulator | None) -> str | None:
    """The dev person in the Auth emulator (when make run started it) and their OWNER membership of the dev account
    (idempotent: kept if it is there)."""
    if auth_emulator is None:
        return None
    from shared.adapters.firestore import get_store
    from shared.domain.errors import AlreadyMember
    from shared.domain.state_machine import Role
    from shared.services import members

    uid = auth_emulator.ensure_user(DEV_PERSON["email"], DEV_PERSON["password"], uid=DEV_PERSON["uid"])
    try:
        members.add_member(get_store(), DEV_ACCOUNT, uid, DEV_PERSON["email"], [Role.OWNER], by="system:make-run")
    except AlreadyMember:
        pass
    return uid


def allow_dashboard_origin(port: int) -> str:
    """CORS: the dashboard served from this router's own address may call the API, besides QORCH_CORS_ORIGINS."""
    own = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    given = [o.strip() for o in os.environ.get("QORCH_CORS_ORIGINS", "").split(",") if o.strip()]
    os.environ["QORCH_CORS_ORIGINS"] = ",".join(dict.fromkeys([*given, *own]))
    return os.environ["QORCH_CORS_ORIGINS"]


def _stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM/SIGHUP clean up exactly like Ctrl-C: the emulator must not outlive us


@contextmanager
def backends() -> Iterator[None]:
    """The Firestore emulator (unless FIRESTORE_EMULATOR_HOST is set) and moto as the local S3 endpoint (unless
    QORCH_S3_BUCKET is set), with this process's environment pointed at them; stopped on the way out. Raises
    MissingPrerequisite when the emulator cannot run here. (`make run`, and `make demo` when no stack runs.)"""
    from shared.runtime.config import config

    emulator = s3 = None
    try:
        if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
            print("Starting the Firestore emulator…", flush=True)
            emulator = Emulator().start()
            os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
        os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "qorch-local")
        config.cache_clear()  # the configuration is read again, with the settings just made
        if not os.environ.get("QORCH_S3_BUCKET"):  # artifacts: moto as the local S3 endpoint, bucket created
            from tools.locals3 import LocalS3

            s3 = LocalS3().start()
        yield
    finally:
        if s3:
            s3.stop()
        if emulator:
            emulator.stop()
            print("Stopped the Firestore emulator.", flush=True)


@contextmanager
def announced(api_url: str) -> Iterator[None]:
    """While the product serves, .qorch/stack.json says where (API, emulator, project), so that `make demo` in
    another terminal uses this stack instead of starting its own."""
    STACK_FILE.parent.mkdir(exist_ok=True)
    STACK_FILE.write_text(json.dumps({"api_url": api_url, "pid": os.getpid(),
                                      "firestore_emulator_host": os.environ["FIRESTORE_EMULATOR_HOST"],
                                      "google_cloud_project": os.environ["GOOGLE_CLOUD_PROJECT"]}) + "\n")
    try:
        yield
    finally:
        STACK_FILE.unlink(missing_ok=True)


@contextmanager
def auth_emulator_backend() -> Iterator[AuthEmulator | None]:
    """The Firebase Auth emulator (unless FIREBASE_AUTH_EMULATOR_HOST is set; project `demo-qorch`), with this
    process's environment pointed at it; stopped on the way out. It is the slowest to start (20-50 s), so it is
    launched first and the caller waits for it (`.wait()`) once the rest is up. Yields None when one runs already."""
    auth_emulator = None
    try:
        if not os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"):
            print("Starting the Firebase Auth emulator…", flush=True)
            auth_emulator = AuthEmulator().launch()
            os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = auth_emulator.address
            os.environ.setdefault("QORCH_FIREBASE_PROJECT", auth_emulator.project)
        yield auth_emulator
    finally:
        if auth_emulator:
            auth_emulator.stop()
            print("Stopped the Firebase Auth emulator.", flush=True)


def serve_until_stopped(port: int) -> int:
    """The router on `port` with functions-framework's production server (tools/serve.py, a process of its own),
    until it stops or this process is told to (Ctrl-C, SIGTERM: then it is stopped too)."""
    from tools import serve

    server = serve.start(port)
    try:
        if server.wait() != 0:
            print(f"\nThe server stopped (exit status {server.returncode}); is port {port} taken?", file=sys.stderr)
            return 2
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    from shared.runtime.config import ConfigError, config

    try:
        config()  # a bad setting stops here, before anything is started, with the message the instance would give
    except ConfigError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 2
    port = int(os.environ.get("PORT", "8080"))
    origins = allow_dashboard_origin(port)  # before anything reads the configuration (it is read once)
    try:
        with auth_emulator_backend() as auth_emulator, backends():
            key = bootstrap_dev_account()
            if auth_emulator is not None:
                auth_emulator.wait()
            person = bootstrap_dev_person(auth_emulator)
            auth_host = os.environ["FIREBASE_AUTH_EMULATOR_HOST"]
            auth_project = os.environ.get("QORCH_FIREBASE_PROJECT") or os.environ["GOOGLE_CLOUD_PROJECT"]
            print(
                f"\nFirestore emulator: {os.environ['FIRESTORE_EMULATOR_HOST']} (project "
                f"{os.environ['GOOGLE_CLOUD_PROJECT']})\n"
                f"Firebase Auth emulator: http://{auth_host} (project {auth_project}); web apps: "
                f"connectAuthEmulator(auth, \"http://{auth_host}\") with projectId \"{auth_project}\"\n"
                f"Object store (artifacts): {os.environ.get('QORCH_S3_ENDPOINT_URL', 'AWS S3')} bucket "
                f"{os.environ['QORCH_S3_BUCKET']}\n"
                f"Dev account: {DEV_ACCOUNT} (plan dev, entitled)\n"
                + (f"Dev person (OWNER of {DEV_ACCOUNT}): {DEV_PERSON['email']} / password {DEV_PERSON['password']} "
                   f"(uid {person})\n" if person else "")
                + f"Owner API key (also in {KEY_FILE.relative_to(ROOT)}):\n  {key}\n"
                f"CORS origins allowed: {origins}\n"
                f"Dashboard: http://127.0.0.1:{port}/\n"
                f"Serving http://127.0.0.1:{port}/v1  (Ctrl-C stops everything)\n",
                flush=True,
            )
            with announced(f"http://127.0.0.1:{port}"):
                return serve_until_stopped(port)
    except (MissingPrerequisite, ConfigError) as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

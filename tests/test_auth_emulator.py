"""The Firebase Auth emulator, as `make run` uses it: the real emulator (firebase-tools from npm, `npm ci`) signs a
person up and in, and the API accepts its unsigned tokens only while FIREBASE_AUTH_EMULATOR_HOST is set. Production
(K_SERVICE set) refuses to start with that variable."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.runtime.config import ConfigError, config
from tools.authemulator import AuthEmulator
from tools.emulator import MissingPrerequisite

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def auth_emulator() -> Iterator[AuthEmulator]:
    try:
        emulator = AuthEmulator(project="demo-qorch-test").start()
    except MissingPrerequisite as exc:
        pytest.fail(str(exc))
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator_mode(auth_emulator, monkeypatch) -> Iterator[AuthEmulator]:
    """This process verifies tokens as `make run` does: against the Auth emulator."""
    from shared.adapters import firebase_auth

    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator.address)
    monkeypatch.setenv("QORCH_FIREBASE_PROJECT", auth_emulator.project)
    monkeypatch.delenv("K_SERVICE", raising=False)
    config.cache_clear()
    firebase_auth.reset()
    yield auth_emulator
    config.cache_clear()


def person(emulator: AuthEmulator, *, verified: bool = True) -> tuple[str, str]:
    """A new person signed up in the emulator (as a browser would), email verified if asked: (uid, ID token)."""
    email, password = f"p{uuid.uuid4().hex[:8]}@example.com", "correct-horse"
    uid = emulator.sign_up(email, password)["localId"]
    if verified:
        emulator.verify_email(uid)
    return uid, emulator.sign_in(email, password)


def test_a_person_signs_up_through_the_emulator_and_uses_the_api(api, emulator_mode):
    uid, token = person(emulator_mode)
    r = api.post("/v1/accounts", {"name": "From the emulator"}, token)
    assert r.status == 201, r.body
    me = api.get("/v1/me", token).body
    assert me["uid"] == uid and me["email_verified"] is True
    assert [a["roles"] for a in me["accounts"]] == [["OWNER"]]
    # an invitation accepted by another emulator person
    r = api.post("/v1/members", {"email": "friend@example.com", "roles": ["VIEWER"]}, token)
    assert r.status == 201, r.body
    friend = emulator_mode.sign_up("friend@example.com", "friend-pass")["localId"]
    unverified = emulator_mode.sign_in("friend@example.com", "friend-pass")
    account = {"account_id": me["accounts"][0]["account_id"]}
    assert api.post("/v1/members/accept", account, unverified).code == "email_not_verified"
    emulator_mode.verify_email(friend)
    verified = emulator_mode.sign_in("friend@example.com", "friend-pass")
    waiting = api.get("/v1/me", verified).body["invitations"]  # says which account, by name
    assert [(i["account_id"], i["account_name"], i["roles"]) for i in waiting] == [
        (account["account_id"], me["accounts"][0]["account_name"], ["VIEWER"])]
    assert me["accounts"][0]["account_name"]
    assert api.post("/v1/members/accept", account, verified).status == 200
    assert api.get("/v1/workflows", verified).status == 200


def test_emulator_tokens_for_another_project_are_refused(api, emulator_mode, monkeypatch):
    _, token = person(emulator_mode)
    monkeypatch.setenv("QORCH_FIREBASE_PROJECT", "demo-another")
    config.cache_clear()
    assert api.get("/v1/me", token).code == "unauthenticated"


def test_emulator_tokens_are_refused_when_not_against_the_emulator(api, auth_emulator, monkeypatch):
    """Unsigned tokens verify only while the emulator variable is set: otherwise they are any other bad token."""
    _, token = person(auth_emulator)
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("QORCH_FIREBASE_PROJECT", auth_emulator.project)
    config.cache_clear()
    try:
        assert api.get("/v1/me", token).code == "unauthenticated"
    finally:
        config.cache_clear()


# ---- production refuses the emulator variable ---------------------------------------------------------------------

STARTS = "import main; print('started')"


def start(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "FIREBASE_AUTH_EMULATOR_HOST")}
    return subprocess.run([sys.executable, "-c", STARTS], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**environ, **env})


def test_production_refuses_to_start_with_the_auth_emulator_variable():
    refused = start(K_SERVICE="get_workflow", FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099")
    assert refused.returncode != 0 and "started" not in refused.stdout
    assert "qorch cannot start" in refused.stderr and "FIREBASE_AUTH_EMULATOR_HOST" in refused.stderr
    # the same code starts in production without it, and locally with it
    assert start(K_SERVICE="get_workflow").stdout.strip() == "started"
    assert start(FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099").stdout.strip() == "started"


def test_production_configuration_is_refused_in_process_too(monkeypatch):
    monkeypatch.setenv("K_SERVICE", "get_workflow")
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    config.cache_clear()
    try:
        with pytest.raises(ConfigError, match="FIREBASE_AUTH_EMULATOR_HOST is set on a deployed instance"):
            config()
    finally:
        monkeypatch.undo()
        config.cache_clear()

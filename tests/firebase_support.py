"""People in tests: Firebase ID tokens signed the way Firebase signs them (RS256, a key id, X.509 certificates
published on a URL), with keys the tests generate, and that URL served by a local HTTP server. The product's real
verification code (`shared.adapters.firebase_auth`: google-auth's `verify_token`) checks them; nothing is bypassed.

    def test_x(api, firebase):
        token = firebase.token("uid-1", "ann@example.com")        # a verified person
        api.get("/v1/me", token)
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

PROJECT = "demo-qorch-test"
CERTS_PATH = "/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"


@dataclass
class SigningKey:
    """An RSA key and its self-signed X.509 certificate, as Google publishes Firebase's."""

    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")])
        now = datetime.now(UTC)
        self.certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                            .public_key(self.private.public_key()).serial_number(x509.random_serial_number())
                            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                            .sign(self.private, hashes.SHA256()))
        self.pem = self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None, *, with_kid: bool = True) -> str:
        signer = crypt.RSASigner.from_string(self.pem, key_id=self.kid if with_kid else None)
        return jwt.encode(signer, claims, header=header).decode()


class CertificateServer:
    """Serves {kid: certificate} at CERTS_PATH with `Cache-Control: public, max-age=<max_age>`, like Google; counts
    the fetches."""

    def __init__(self) -> None:
        self.published: dict[str, str] = {}
        self.max_age = 3600
        self.fetches = 0
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                if outer.fail or self.path != CERTS_PATH:
                    self.send_response(503 if outer.fail else 404)
                    self.end_headers()
                    return
                body = json.dumps(outer.published).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={outer.max_age}, must-revalidate, no-transform")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}{CERTS_PATH}"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="certs").start()

    def publish(self, *keys: SigningKey) -> None:
        self.published = {k.kid: k.certificate_pem for k in keys}


@dataclass
class Firebase:
    """What a test needs to act as people: Firebase's signing key, its published certificates, and tokens."""

    key: SigningKey
    server: CertificateServer
    project: str = PROJECT

    def claims(self, uid: str, email: str | None = None, *, verified: bool = True, lifetime: int = 3600,
               **override: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": f"https://securetoken.google.com/{self.project}", "aud": self.project, "auth_time": now - 5,
            "user_id": uid, "sub": uid, "iat": now - 5, "exp": now - 5 + lifetime,
            "firebase": {"identities": {"email": [email]} if email else {}, "sign_in_provider": "password"},
        }
        if email is not None:
            claims |= {"email": email, "email_verified": verified}
        return claims | override

    def token(self, uid: str, email: str | None = None, *, verified: bool = True, key: SigningKey | None = None,
              with_kid: bool = True, **override: Any) -> str:
        """A Firebase ID token for `uid` (signed by Firebase's key unless `key` says otherwise); `override` replaces
        or adds claims (None values are dropped)."""
        claims = {k: v for k, v in self.claims(uid, email, verified=verified, **override).items() if v is not None}
        return (key or self.key).sign(claims, with_kid=with_kid)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


_server: CertificateServer | None = None
_key: SigningKey | None = None


@pytest.fixture
def firebase(monkeypatch: pytest.MonkeyPatch) -> Iterator[Firebase]:
    """The process verifies ID tokens against the local certificate server (a fresh certificate cache per test).
    Test modules use it as `firebase = firebase_support.firebase`."""
    from shared.adapters import firebase_auth
    from shared.runtime.config import config

    global _server, _key
    if _server is None:
        _server, _key = CertificateServer(), SigningKey()
    assert _key is not None
    _server.publish(_key)
    _server.max_age, _server.fail, _server.fetches = 3600, False, 0
    monkeypatch.setenv("QORCH_FIREBASE_PROJECT", PROJECT)
    monkeypatch.setenv("QORCH_FIREBASE_CERTS_URL", _server.url)
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    config.cache_clear()
    firebase_auth.reset()
    yield Firebase(_key, _server)
    config.cache_clear()
    firebase_auth.reset()

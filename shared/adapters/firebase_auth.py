"""Firebase ID tokens, verified completely with google-auth, the library made for it
(`google.oauth2.id_token.verify_token`):

- the RS256 signature, against the X.509 certificates Google publishes for Firebase (`QORCH_FIREBASE_CERTS_URL`),
  fetched once per instance and kept for as long as their Cache-Control allows;
- `aud` is the Firebase project (`QORCH_FIREBASE_PROJECT`), `iss` is https://securetoken.google.com/<project>;
- `exp`, `iat` and `auth_time`, with a small clock skew (checked by the library against the system clock, and here
  again against the one clock the product reads);
- a non-empty `sub` (the uid; Firebase allows at most 128 characters).

Against the Firebase Auth emulator (FIREBASE_AUTH_EMULATOR_HOST set) tokens are unsigned (`alg: none`), so only the
claims are checked, as firebase-admin does; a deployed instance refuses to start with that variable set
(`shared.runtime.config.Settings`).

Imported only when a token arrives (`shared.services.auth.verify_token`): its cost is measured by `make bench`.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import google.auth.transport.requests
from google.auth import exceptions as gauth
from google.auth import jwt
from google.oauth2 import id_token

from shared.domain.errors import Unauthenticated, Unavailable
from shared.runtime import clock
from shared.runtime.config import config
from shared.runtime.instance import PerInstance

SKEW_SECONDS = 10
ISSUER_PREFIX = "https://securetoken.google.com/"
CERTS_TIMEOUT_SECONDS = 5.0
_REFUSED = "Send Authorization: Bearer <api key or Firebase ID token>."


class CachedGet:
    """A google-auth transport that keeps each successful GET for as long as its Cache-Control allows (`max-age`
    less `Age`; nothing with `no-store` or `no-cache`), by the one clock. Google's certificate endpoint answers with
    `max-age` of some hours, so an instance fetches the certificates once in a while, not per token."""

    def __init__(self) -> None:
        self._http = google.auth.transport.requests.Request()
        self._kept: dict[str, tuple[Any, datetime]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        if method != "GET":
            return self._http(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        with self._lock:
            kept = self._kept.get(url)
            if kept is not None and clock.now() < kept[1]:
                return kept[0]
        response = self._http(url, method="GET", headers=headers, timeout=timeout or CERTS_TIMEOUT_SECONDS)
        with self._lock:
            self.fetches += 1
            if response.status == 200 and (seconds := max_age(response.headers)) > 0:
                self._kept[url] = (response, clock.now() + timedelta(seconds=seconds))
        return response


def max_age(headers: Any) -> int:
    """Seconds a response may be reused for, from its Cache-Control (and Age) headers; 0: not at all."""
    directives = [d.strip().lower() for d in (headers.get("Cache-Control") or "").split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age":
            try:
                seconds = int(value.strip().strip('"'))
                age = int(headers.get("Age") or 0)
            except ValueError:
                return 0
            return max(0, seconds - age)
    return 0


_transport: PerInstance[CachedGet] = PerInstance(CachedGet)


def transport() -> CachedGet:
    return _transport.get()


def reset() -> None:
    """Forget the cached certificates (tests, key rotation drills)."""
    _transport.set(None)


def verify_id_token(token: str) -> dict[str, Any]:
    """The token's claims once every check passed; 401 otherwise (why is only logged), 503 if the certificates
    cannot be fetched."""
    cfg = config()
    project = cfg.firebase_project
    try:
        if cfg.auth_emulator_host:
            claims = dict(jwt.decode(token, verify=False))
        else:
            header = jwt.decode_header(token)
            if header.get("alg") != "RS256" or not header.get("kid"):
                raise ValueError(f"alg {header.get('alg')!r} / kid {header.get('kid')!r}: Firebase signs RS256 "
                                 "with a key id")
            claims = dict(id_token.verify_token(token, transport(), audience=project,
                                                certs_url=cfg.firebase_certs_url,
                                                clock_skew_in_seconds=SKEW_SECONDS))
    except gauth.TransportError as exc:
        raise Unavailable("The token signing certificates could not be fetched; retry shortly.") from exc
    except (gauth.GoogleAuthError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise Unauthenticated(_REFUSED) from exc
    problem = claims_problem(claims, project, clock.now())
    if problem:
        raise Unauthenticated(_REFUSED) from ValueError(problem)
    return claims


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def claims_problem(claims: dict[str, Any], project: str, now: datetime) -> str | None:
    """What is wrong with verified-signature claims, or None."""
    if claims.get("aud") != project:
        return f"aud is {claims.get('aud')!r}, not the project {project!r}"
    if claims.get("iss") != ISSUER_PREFIX + project:
        return f"iss is {claims.get('iss')!r}"
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 128:
        return "sub must be a non-empty uid of at most 128 characters"
    for name in ("exp", "iat", "auth_time"):
        if not _number(claims.get(name)):
            return f"{name} is missing"
    t = now.timestamp()
    if claims["exp"] <= t - SKEW_SECONDS:
        return "expired"
    if claims["iat"] > t + SKEW_SECONDS:
        return "issued in the future"
    if claims["auth_time"] > t + SKEW_SECONDS:
        return "authenticated in the future"
    if "email" in claims and not isinstance(claims["email"], str):
        return "email is not a string"
    return None

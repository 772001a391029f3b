"""The dashboard's files (web/) as `make run`'s router serves them at `/`, beside the API at `/v1`.

In production the same folder goes on Firebase Hosting (infra/firebase-hosting.json); this module does locally what
Hosting does there: the files with their types, compressed when the browser accepts it (Hosting compresses too, so
the transfer the tests measure is the one a customer gets), `index.html` for the dashboard's own paths (Hosting's
rewrite), and `/config.json`, which Hosting serves as a file written at deploy time and which is built here from
the environment of `make run`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import mimetypes
import os
import re
from functools import lru_cache
from pathlib import Path

import flask

from shared.runtime.config import config

WEB = Path(__file__).resolve().parent.parent / "web"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
          ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon", ".txt": "text/plain",
          ".md": "text/markdown"}
_COMPRESSIBLE = (".js", ".css", ".html", ".svg", ".json", ".txt", ".md")
# What the dashboard's pages are called (history routing): anything else without a file is a plain 404.
_PAGES = ("/", "/signin", "/welcome", "/workflows", "/account")


def dashboard_config() -> dict:
    """What the page needs before it can sign anyone in: where the API is and which Firebase project signs people
    in (and, under `make run`, the Auth emulator's address)."""
    # The project and the emulator come from the one configuration, so the page signs in where the API verifies.
    settings = config()
    project, emulator = settings.firebase_project, settings.auth_emulator_host
    return {
        "api_base": os.environ.get("QORCH_DASHBOARD_API_BASE", "/v1"),
        "firebase": {
            # The Auth emulator accepts any API key; a real project's web API key is public by design.
            "apiKey": os.environ.get("QORCH_FIREBASE_WEB_API_KEY", "fake-api-key"),
            "authDomain": os.environ.get("QORCH_FIREBASE_AUTH_DOMAIN", f"{project}.firebaseapp.com"),
            "projectId": project,
        },
        "auth_emulator": f"http://{emulator}" if emulator else None,
    }


@lru_cache(maxsize=256)
def _load(path: Path, mtime_ns: int) -> tuple[bytes, bytes | None, str]:
    """The file's bytes, their gzip (once per version of the file) and an ETag."""
    del mtime_ns  # part of the cache key only: an edited file is read again
    data = path.read_bytes()
    packed = gzip.compress(data, 6, mtime=0) if path.suffix in _COMPRESSIBLE else None
    return data, packed, hashlib.sha256(data).hexdigest()[:32]


def _file_for(url_path: str) -> Path | None:
    if url_path in _PAGES or any(url_path.startswith(p + "/") for p in _PAGES[1:]):
        return WEB / "index.html"
    candidate = (WEB / url_path.lstrip("/")).resolve()
    if WEB not in candidate.parents or not candidate.is_file() or candidate.name.startswith("."):
        return None  # outside web/ (a `..` trick), a folder, a dotfile or nothing at all
    return candidate


def serve(request: flask.Request) -> flask.Response | None:
    """The answer for a dashboard path, or None when the path is not the dashboard's (the caller answers 404)."""
    if request.method not in ("GET", "HEAD"):
        return None
    if request.path == "/config.json":
        response = flask.Response(json.dumps(dashboard_config()), mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    path = _file_for(request.path)
    if path is None:
        return None
    data, packed, etag = _load(path, path.stat().st_mtime_ns)
    headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache", "Vary": "Accept-Encoding",
               "X-Content-Type-Options": "nosniff"}
    if path.suffix == ".html":
        headers.update(_html_headers())
    if request.if_none_match.contains(etag):
        return flask.Response(status=304, headers=headers)
    mimetype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    body = data
    if packed is not None and "gzip" in request.accept_encodings:
        body = packed
        headers["Content-Encoding"] = "gzip"
    response = flask.Response(body, mimetype=mimetype, headers=headers)
    if mimetype.startswith("text/") or mimetype == "application/json":
        response.charset = "utf-8"
    return response


def _html_headers() -> dict[str, str]:
    """The same security headers Hosting sends (infra/firebase-hosting.json), so the tests see what production does."""
    # Locally the object store (moto) and the Auth emulator are plain-HTTP origins on this machine.
    local = " http://127.0.0.1:* http://localhost:*"
    return {"Content-Security-Policy": content_security_policy(local),
            "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}


def importmap_hash() -> str:
    """The CSP hash of index.html's inline import map (the one inline script; CSP must name it to allow it)."""
    html = (WEB / "index.html").read_text()
    found = re.search(r'<script type="importmap">(.*?)</script>', html, re.S)
    if found is None:
        raise RuntimeError("web/index.html has no import map")
    return "'sha256-" + base64.b64encode(hashlib.sha256(found.group(1).encode()).digest()).decode() + "'"


def content_security_policy(connect_extra: str = "") -> str:
    """The page's CSP as Firebase Hosting sends it (infra/firebase-hosting.json; a test keeps the two equal), plus
    `connect_extra` origins for connections and frames (the local emulators)."""
    # Firebase Auth talks to Google's identity endpoints and, for Google sign-in, loads apis.google.com's script and
    # the auth domain's frame; artifact downloads come from presigned object-store URLs (any https origin, and the
    # local moto endpoint under make run), so connect-src stays broad for them.
    return (f"default-src 'self'; script-src 'self' {importmap_hash()} https://apis.google.com; style-src 'self'; "
            "img-src 'self' data: https://*.googleusercontent.com; "
            "connect-src 'self' https:" + connect_extra + "; "
            "frame-src 'self' https://*.firebaseapp.com https://accounts.google.com" + connect_extra + "; "
            "base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'")

"""The dashboard's files without a browser: the vendored SDK is byte for byte what npm ships, every module import
resolves to a file here, no page builds HTML from strings, the local router serves web/ the way Firebase Hosting
does (same headers, same rewrites), and the Hosting deploy stages the right configuration."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from shared.runtime.config import config as settings
from tools import dashboard

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
VENDOR = WEB / "vendor" / "firebase-13.2.0"
HOSTING = json.loads((ROOT / "infra" / "firebase-hosting.json").read_text())


def test_the_vendored_firebase_sdk_is_the_npm_release_unmodified():
    table = dict(re.findall(r"\| `([\w.-]+\.js)` \| `([0-9a-f]{64})` \|", (VENDOR / "VENDORED.md").read_text()))
    assert set(table) == {"firebase-app.js", "firebase-auth.js"}
    for name, digest in table.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (VENDOR / "LICENSE").read_text()
    assert sorted(p.name for p in VENDOR.iterdir()) == ["LICENSE", "VENDORED.md", "firebase-app.js",
                                                         "firebase-auth.js"]


def _modules() -> list[Path]:
    return sorted((WEB / "app").rglob("*.js"))


def test_every_import_resolves_to_a_file_of_the_dashboard():
    importmap = json.loads(re.search(r'<script type="importmap">(.*?)</script>',
                                     (WEB / "index.html").read_text(), re.S).group(1))["imports"]
    for module in _modules():
        text = module.read_text()
        specifiers = re.findall(r"""(?:^|\n)\s*(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]""", text)
        specifiers += re.findall(r"""import\(\s*['"]([^'"]+)['"]\s*\)""", text)
        assert specifiers or module.name in ("ui.js", "api.js"), module
        for spec in specifiers:
            target = (WEB / spec.lstrip("/")) if spec.startswith("/") else (module.parent / spec)
            assert target.resolve().is_file(), f"{module.relative_to(ROOT)} imports {spec}"
    # The SDK's own cross-module import is its CDN address, mapped to the vendored file: nothing loads from a CDN.
    cdn = set(re.findall(r'from"(https://[^"]+)"', (VENDOR / "firebase-auth.js").read_text()))
    assert cdn == set(importmap)
    for address in cdn:
        assert (WEB / importmap[address].lstrip("/")).is_file()


def test_no_page_builds_markup_from_strings():
    """Titles, notes and artifacts come from agents: they may only ever reach the page as text."""
    for module in _modules():
        text = module.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{module.relative_to(ROOT)} uses {sink}"


def test_the_only_inline_script_is_the_import_map_and_the_csp_names_its_hash():
    html = (WEB / "index.html").read_text()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    inline = [body for attrs, body in scripts if "src=" not in attrs]
    assert len(inline) == 1 and 'type="importmap"' in html
    digest = "'sha256-" + __import__("base64").b64encode(hashlib.sha256(inline[0].encode()).digest()).decode() + "'"
    assert digest in dashboard.content_security_policy()
    assert "style=" not in html  # the CSP allows no inline style either


def test_firebase_hosting_sends_what_the_local_router_sends():
    hosting = HOSTING["hosting"]
    everywhere = {h["key"]: h["value"] for rule in hosting["headers"] if rule["source"] == "**"
                  for h in rule["headers"]}
    assert everywhere["Content-Security-Policy"] == dashboard.content_security_policy(), (
        "infra/firebase-hosting.json is stale: its CSP must be tools.dashboard.content_security_policy()")
    local = dashboard._html_headers()
    for key in ("Referrer-Policy", "X-Frame-Options"):
        assert everywhere[key] == local[key]
    rewritten = {r["source"] for r in hosting["rewrites"]}
    for page in dashboard._PAGES[1:]:
        assert page in rewritten and f"{page}/**" in rewritten | {"/signin/**", "/welcome/**", "/account/**"}
    assert all(r["destination"] == "/index.html" for r in hosting["rewrites"])


@pytest.fixture
def client(app):
    return app.test_client()


def test_the_router_serves_the_dashboard_at_the_root_and_the_api_at_v1(client, monkeypatch):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Content-Security-Policy" in page.headers and b'type="importmap"' in page.data
    for path in ("/workflows", "/workflows/wf_abc", "/account", "/signin", "/welcome"):
        again = client.get(path)
        assert (again.status_code, again.data) == (200, page.data), path

    module = client.get("/app/main.js", headers={"Accept-Encoding": "gzip, br"})
    assert module.status_code == 200 and module.mimetype == "text/javascript"
    assert module.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(module.data) == (WEB / "app" / "main.js").read_bytes()
    plain = client.get("/app/main.js")
    assert "Content-Encoding" not in plain.headers and plain.data == (WEB / "app" / "main.js").read_bytes()
    assert client.get("/app/main.js", headers={"If-None-Match": plain.headers["ETag"]}).status_code == 304

    for missing in ("/app/nope.js", "/../tools/run.py", "/app/../../tools/run.py", "/%2e%2e/main.py",
                    "/.gitignore", "/vendor", "/nope"):
        r = client.get(missing)
        assert (r.status_code, r.mimetype) == (404, "application/problem+json"), missing
    assert client.post("/").status_code in (404, 405)
    assert client.get("/v1/state-machine").mimetype == "application/json"

    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    monkeypatch.setenv("QORCH_FIREBASE_PROJECT", "demo-x")
    settings.cache_clear()  # the page's project and emulator are the configuration's, read once per instance
    try:
        config = client.get("/config.json").get_json()
    finally:
        monkeypatch.undo()
        settings.cache_clear()
    assert config == {"api_base": "/v1", "auth_emulator": "http://127.0.0.1:9099",
                      "firebase": {"apiKey": "fake-api-key", "authDomain": "demo-x.firebaseapp.com",
                                   "projectId": "demo-x"}}


def test_the_hosting_deploy_stages_the_folder_and_its_configuration(tmp_path):
    env = {**os.environ, "PROJECT": "acme-prod", "API_BASE": "https://qorch-abc.ew.gateway.dev/v1",
           "FIREBASE_WEB_API_KEY": "AIza-test", "TMPDIR": str(tmp_path)}
    out = subprocess.run(["bash", "infra/deploy-dashboard.sh", "--dry-run"], cwd=ROOT, env=env, text=True,
                         capture_output=True, check=True).stdout
    staged = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert staged == {"api_base": "https://qorch-abc.ew.gateway.dev/v1", "auth_emulator": None,
                      "firebase": {"apiKey": "AIza-test", "authDomain": "acme-prod.firebaseapp.com",
                                   "projectId": "acme-prod"}}
    assert "Dry run: nothing deployed." in out and list(tmp_path.iterdir()) == []  # the stage is cleaned up
    bad = subprocess.run(["bash", "infra/deploy-dashboard.sh", "--dry-run"], cwd=ROOT, text=True,
                         capture_output=True, env={**env, "API_BASE": "http://insecure.example/v1"})
    assert bad.returncode == 2 and "https" in bad.stderr

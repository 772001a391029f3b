"""Cold start: each deployed function, in a fresh interpreter, loads neither `stripe` nor `boto3` unless it is one of
the few that need them (the allow-list below), never the AI SDKs (`anthropic`, `openai`, `mcp`: the agent runner's
and the MCP server's, in requirements-agents.txt), and no function loads the Firebase ID token verifier until a token
arrives (every authenticated function may receive one, so it is imported when a token-shaped credential comes, not
before; `make bench` measures what that costs). Checked on import of the function's module, on import of `main.py`
(which must import no function module at all), on the first request through `main`'s entry point, and in the source:
nothing under functions/ or shared/, nor main.py, imports the AI SDKs or the `agents` package."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.http.event_functions import EVENT_FUNCTIONS
from shared.http.routes import ROUTES

ROOT = Path(__file__).resolve().parent.parent
# The heavy SDKs: stripe ≈ 125 ms, boto3 (with botocore) ≈ 170 ms of cold import each; the AI SDKs are the agents'
# (anthropic alone took 3.5 s to import on a busy 2-core machine) and no function may load them.
AI_SDKS = ("anthropic", "openai", "mcp", "agents")
HEAVY = ("stripe", "boto3", "botocore", *AI_SDKS)
# Loaded only when a request carries a Firebase ID token (shared.services.auth imports it then).
VERIFIER = ("shared.adapters.firebase_auth", "google.oauth2.id_token")
STRIPE = frozenset({"stripe"})
AWS = frozenset({"boto3", "botocore"})
# Which function module may load which heavy SDK. Anything not listed may load none of them.
ALLOWED: dict[str, frozenset[str]] = {
    "stripe_webhook": STRIPE,
    "create_checkout_session": STRIPE,
    "create_portal_session": STRIPE,
    "create_artifact": AWS,
    "complete_artifact": AWS,
    "get_artifact": AWS,
    "get_workflow_context": AWS,  # signs download URLs, only when there are artifacts to sign
}
FUNCTION_MODULES = sorted(p.stem for p in (ROOT / "functions").glob("*.py") if p.stem != "__init__")
HTTP_FUNCTIONS = [r.function for r in ROUTES]

# Run in a fresh interpreter: `import <module>`, or `call <function>` (import main, then one request without an API
# key through main's entry point, as the Cloud Functions runtime would make it), or `token <function>` (the same with a
# credential shaped like an ID token). Prints what got loaded.
PROBE = r"""
import importlib, json, sys
mode, name = sys.argv[1], sys.argv[2]
heavy = json.loads(sys.argv[3])
loaded = lambda: sorted(m for m in heavy if m in sys.modules)
functions = lambda: sorted(m for m in sys.modules if m.startswith("functions."))
out = {}
if mode == "import":
    importlib.import_module(name)
else:
    import flask, main
    out["after_import"] = {"heavy": loaded(), "functions": functions()}
    from shared.http.routes import BY_FUNCTION
    route = BY_FUNCTION[name]
    path = route.path
    for param in route.params:
        path = path.replace("{" + param + "}", "x1")
    app = flask.Flask("probe")
    headers = {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"} if mode == "token" else {}
    with app.test_request_context(path, method=route.method, data=b"{}", content_type="application/json",
                                  headers=headers):
        out["status"] = getattr(main, name)(flask.request).status_code
out.update(heavy=loaded(), functions=functions())
print(json.dumps(out))
"""


def probe(mode: str, name: str) -> dict:
    # No store is reachable (nothing listens on port 9): the probed requests are refused before they need one.
    env = {**os.environ, "GOOGLE_CLOUD_PROJECT": "qorch-cold-start", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
           "QORCH_STORE_TIMEOUT_SECONDS": "1", "QORCH_FIREBASE_CERTS_URL": "http://127.0.0.1:9/certs"}
    env.pop("FIREBASE_AUTH_EMULATOR_HOST", None)
    done = subprocess.run([sys.executable, "-c", PROBE, mode, name, json.dumps(HEAVY + VERIFIER)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_probe_sees_a_heavy_import():
    """The check can fail: importing boto3 directly is seen, and so is the verifier."""
    assert probe("import", "boto3")["heavy"] == ["boto3", "botocore"]
    assert set(VERIFIER) <= set(probe("import", "shared.adapters.firebase_auth")["heavy"])


def test_the_probe_sees_an_ai_sdk_import():
    assert probe("import", "openai")["heavy"] == ["openai"]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_function_code_imports_the_ai_sdks_or_the_agents():
    sources = [ROOT / "main.py", *sorted((ROOT / "functions").rglob("*.py")), *sorted((ROOT / "shared").rglob("*.py"))]
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_roots(p) & set(AI_SDKS)) for p in sources}
    assert {p: found for p, found in offenders.items() if found} == {}
    assert _imported_roots(ROOT / "agents" / "providers" / "openai_api.py") & set(AI_SDKS), "the check can fail"


def test_the_allow_list_names_real_functions():
    assert set(ALLOWED) <= set(FUNCTION_MODULES)
    assert set(HTTP_FUNCTIONS) | {f.function for f in EVENT_FUNCTIONS} <= set(FUNCTION_MODULES)


@pytest.mark.parametrize("function", FUNCTION_MODULES)
def test_importing_a_function_loads_no_sdk_it_does_not_need(function):
    loaded = probe("import", f"functions.{function}")
    assert set(loaded["heavy"]) <= ALLOWED.get(function, frozenset()), loaded
    assert loaded["functions"] == [f"functions.{function}"], "a function module imports only itself"


@pytest.mark.parametrize("function", ["get_workflow", "transition_workflow", "get_me", "accept_invitation"])
def test_a_token_loads_the_verifier_and_nothing_else(function):
    loaded = probe("token", function)
    assert loaded["status"] in (401, 503), loaded  # a malformed token: refused like a bad key, never a 500
    assert set(VERIFIER) <= set(loaded["heavy"])
    assert set(loaded["heavy"]) - set(VERIFIER) <= ALLOWED.get(function, frozenset()), loaded


def test_main_imports_no_function_module_and_no_sdk():
    loaded = probe("import", "main")
    assert loaded == {"heavy": [], "functions": []}


@pytest.mark.parametrize("function", HTTP_FUNCTIONS)
def test_the_first_request_through_main_loads_only_its_function(function):
    loaded = probe("call", function)
    assert loaded["after_import"] == {"heavy": [], "functions": []}
    assert loaded["status"] != 500, loaded  # answered (e.g. 401, or 503 where billing is not configured)
    assert loaded["functions"] == [f"functions.{function}"]
    assert set(loaded["heavy"]) <= ALLOWED.get(function, frozenset()), loaded

"""The import rule (README, Layout), read from the source: every import statement of the product's code, at module
level or inside a function, is checked.

- Floors, lowest first: `shared.domain` < `shared.runtime` < `shared.adapters` < `shared.services` < `shared.http`.
  A module imports product code of its own floor or a lower one only; so the domain imports no other layer.
- Only `shared.adapters` imports the SDKs of other systems: `google.cloud` / `google.api_core`, `google.auth` /
  `google.oauth2` (the ID token verifier), `grpc` (the Firestore client's channel), `stripe`, `boto3` / `botocore`.
- The entry points (`functions/`, `main.py`) import only `shared.http`, `shared.services` and `shared.runtime`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ("shared.domain", "shared.runtime", "shared.adapters", "shared.services", "shared.http")
ENTRY_POINTS_MAY_IMPORT = ("shared.http", "shared.services", "shared.runtime")
SDKS = ("google.cloud", "google.api_core", "google.auth", "google.oauth2", "grpc", "stripe", "boto3", "botocore")


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports_of(source: str) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in `source`, `from a import b` counted as `a.b` too."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def violations(module: str, source: str) -> list[str]:
    """What `module` (whose code is `source`) imports against the rule."""
    out: list[str] = []
    floor = next((i for i, prefix in enumerate(FLOORS) if _under(module, prefix)), None)
    entry_point = _under(module, "functions") or module == "main"
    for line, name in imports_of(source):
        where = f"{module}:{line} imports {name}"
        if any(_under(name, sdk) for sdk in SDKS) and not _under(module, "shared.adapters"):
            out.append(f"{where}: only shared.adapters may import {', '.join(SDKS)}")
        if not _under(name, "shared") or name == "shared":
            continue
        if entry_point and not any(_under(name, allowed) for allowed in ENTRY_POINTS_MAY_IMPORT):
            out.append(f"{where}: an entry point imports only {', '.join(ENTRY_POINTS_MAY_IMPORT)}")
        target = next((i for i, prefix in enumerate(FLOORS) if _under(name, prefix)), None)
        if floor is not None and target is not None and target > floor:
            out.append(f"{where}: {FLOORS[floor]} may not import the floor above it ({FLOORS[target]})")
    return out


def product_files() -> list[Path]:
    return sorted([*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").glob("*.py"), ROOT / "main.py"])


def test_the_product_keeps_the_import_rule():
    found = [v for path in product_files() for v in violations(module_name(path), path.read_text())]
    assert found == [], "\n".join(found)


def paths_and_clients(source: str) -> list[int]:
    """Lines that reach past the store adapter: its Firestore client (`.client`) or a document path literal."""
    tree = ast.parse(source)
    return sorted({node.lineno for node in ast.walk(tree)
                   if (isinstance(node, ast.Attribute) and node.attr == "client")
                   or (isinstance(node, ast.Constant) and isinstance(node.value, str)
                       and ("accounts/" in node.value or "people/" in node.value))})


def test_only_the_store_adapter_knows_firestore_and_its_paths():
    """Services, the HTTP edge and the entry points speak in ids, `Key`s and `Doc`s: no Firestore client, no path."""
    assert paths_and_clients("x = store.client.collection('accounts/a/workflows')") == [1]  # the check can fail
    assert paths_and_clients("x = 1\ny = f'people/{uid}'") == [2]
    files = [*(ROOT / "shared" / "services").glob("*.py"), *(ROOT / "shared" / "http").glob("*.py"),
             *(ROOT / "functions").glob("*.py"), ROOT / "main.py"]
    found = {str(p.relative_to(ROOT)): lines for p in files if (lines := paths_and_clients(p.read_text()))}
    assert found == {}


def test_every_floor_is_checked():
    modules = {module_name(p) for p in product_files()}
    for prefix in (*FLOORS, "functions"):
        assert any(_under(m, prefix) and not m.endswith("__init__") for m in modules), prefix
    assert "main" in modules


def test_the_rule_catches_what_it_forbids():
    assert violations("shared.domain.workflow", "from shared.services import commits") != []
    assert violations("shared.domain.plans", "def f():\n    from shared.runtime.config import config\n") != []
    assert violations("shared.services.workflows", "from google.cloud import firestore") != []
    assert violations("shared.http.endpoint", "import stripe") != []
    assert violations("shared.services.artifacts", "def f():\n    import boto3\n") != []
    assert violations("shared.services.auth", "def f():\n    from google.oauth2 import id_token\n") != []
    assert violations("functions.get_workflow", "from shared.adapters.firestore import get_store") != []
    assert violations("functions.list_workflows", "from shared.domain.models import ListWorkflowsQuery") != []
    assert violations("main", "from shared.domain.errors import NotFound") != []
    assert violations("shared.adapters.firestore", "from shared.services import commits") != []
    # and what it allows
    assert violations("shared.adapters.firestore", "from google.cloud import firestore") == []
    assert violations("shared.adapters.firebase_auth", "import google.auth.transport.requests") == []
    assert violations("shared.services.workflows", "from shared.adapters.firestore import Store") == []
    assert violations("functions.get_workflow", "from shared.services import workflows") == []

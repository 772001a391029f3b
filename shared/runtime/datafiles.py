"""The data files that ship with the functions (beside the domain code, reviewed like code): the role playbooks and
the model price table. Read here, never when a module is imported: `shared.services.catalogs` reads them once per
instance, on first use, and has the domain parse and check the text (`shared.domain.playbooks`,
`shared.domain.pricing`), so a function that does not need them never reads them.

`.gcloudignore` keeps these files in the deployed source (a test checks it).
"""

from __future__ import annotations

from pathlib import Path

DOMAIN_DIR = Path(__file__).resolve().parent.parent / "domain"
PLAYBOOKS_DIR = DOMAIN_DIR / "playbooks"
PRICES_FILE = DOMAIN_DIR / "prices.json"


def read_playbooks(directory: Path = PLAYBOOKS_DIR) -> dict[str, str]:
    """File name → text of every `*.md` in the playbooks directory (UTF-8; a file that is not is an error)."""
    return {path.name: path.read_bytes().decode("utf-8") for path in sorted(directory.glob("*.md"))}


def read_prices(path: Path = PRICES_FILE) -> str:
    return path.read_bytes().decode("utf-8")


"""`make bench`: every benchmark module in this package (each exposes `run()`), one after the other, sharing one
Firestore emulator. `python -m bench claims cleanup` runs only those."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    unknown = [n for n in argv if n not in names]
    if unknown:
        print(f"no bench module {', '.join(unknown)}; there are: {', '.join(names)}", file=sys.stderr)
        return 2
    from tools.emulator import ensure_emulator

    with ensure_emulator():
        for name in argv or names:
            print(f"\n== bench.{name}", flush=True)
            importlib.import_module(f"bench.{name}").run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

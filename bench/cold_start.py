"""Cold start: what verifying people's tokens adds to a function's import time.

Each measurement is a fresh interpreter (as a new instance is) timing its imports, ROUNDS times, the variants
interleaved so drift on this shared machine hits all alike; the median is printed.

- `get_workflow`: `import functions.get_workflow`, today's function, which loads no verifier;
- `get_workflow + verifier`: the same, then `import shared.adapters.firebase_auth`: what an instance of any
  authenticated function imports on its first request that carries an ID token (it is imported then, not before);
- `get_me`: a person-only function's module (it too imports the verifier only on the first token).

Wall-clock, never asserted; tests/test_cold_start.py checks what is loaded, not how long it takes.

    python -m bench cold_start
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from bench import scaled

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = scaled(15)
PROBE = r"""
import sys, time
took = []
for name in sys.argv[1:]:
    started = time.perf_counter()
    __import__(name)
    took.append(time.perf_counter() - started)
print(" ".join(map(str, took)))
"""
VARIANTS = {
    "get_workflow": ["functions.get_workflow"],
    "get_workflow + verifier": ["functions.get_workflow", "shared.adapters.firebase_auth"],
    "get_me": ["functions.get_me"],
}


def _once(modules: list[str]) -> list[float]:
    """Each module's own import time, in order, in one fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=120)
    return [float(t) for t in done.stdout.split()]


def run() -> None:
    for modules in VARIANTS.values():  # compile the bytecode once, outside the measurement
        _once(modules)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    marginal: list[float] = []
    for _ in range(ROUNDS):
        for name, modules in VARIANTS.items():
            took = _once(modules)
            times[name].append(sum(took))
            if len(took) == 2:
                marginal.append(took[1])
    base = statistics.median(times["get_workflow"])
    print(f"cold import, median of {ROUNDS} fresh interpreters each (interleaved)")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:<26} {1000 * median:7.1f} ms   ({1000 * (median - base):+6.1f} ms against get_workflow)")
    print(f"  the verifier's own import, after get_workflow's, in the same interpreter: "
          f"{1000 * statistics.median(marginal):.1f} ms (median)")
    print("  (google-auth, requests and cryptography are already loaded by the Firestore client, so the verifier "
          "adds only its own module and google.oauth2.id_token)")


if __name__ == "__main__":
    run()

"""Benchmarks (`make bench`): each compares against a floor or a peer measured in the same run and prints ratios."""

import os

# QORCH_BENCH_SCALE shrinks every bench's sizes (tests/test_bench.py runs them all small, so that a change that breaks
# a bench's counts or its code fails `make test`, not the next `make bench`). 1 is the real measurement.
SCALE = float(os.environ.get("QORCH_BENCH_SCALE", "1"))


def scaled(n: int, least: int = 1) -> int:
    return max(least, round(n * SCALE))


def ms(samples: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of samples in seconds, in milliseconds."""
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def set_key_cache(seconds: float | None) -> None:
    """Turn this process's API key cache on (its TTL in seconds), off (0), or back to the configured default (None)
    for what is measured next."""
    from shared.runtime.config import config

    if seconds is None:
        os.environ.pop("QORCH_KEY_CACHE_SECONDS", None)
    else:
        os.environ["QORCH_KEY_CACHE_SECONDS"] = str(seconds)
    config.cache_clear()

"""Benchmarks (`make bench`): each compares against a floor or a peer measured in the same run and prints ratios."""


def ms(samples: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of samples in seconds, in milliseconds."""
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def set_key_cache(seconds: float | None) -> None:
    """Turn this process's API key cache on (its TTL in seconds), off (0), or back to the configured default (None)
    for what is measured next."""
    import os

    from shared.runtime.config import config

    if seconds is None:
        os.environ.pop("QORCH_KEY_CACHE_SECONDS", None)
    else:
        os.environ["QORCH_KEY_CACHE_SECONDS"] = str(seconds)
    config.cache_clear()

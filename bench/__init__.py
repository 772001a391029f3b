"""Benchmarks (`make bench`): each compares against a floor or a peer measured in the same run and prints ratios."""


def ms(samples: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of samples in seconds, in milliseconds."""
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

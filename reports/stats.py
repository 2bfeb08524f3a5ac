"""Bootstrap confidence intervals for the ratio candidate / baseline of one statistic of two independent samples.

The percentile bootstrap makes no assumption about the shape of latency distributions (skewed, multi-modal) and
works for any statistic we report (p50, p90, a sum over requests); it is vectorised with numpy, so thousands
of resamples of a few hundred requests take milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]  # (resamples, n) -> (resamples,)


def quantile_statistic(q: float) -> Statistic:
    def statistic(a: np.ndarray) -> np.ndarray:
        return np.quantile(a, q, axis=-1)

    return statistic


def rate_statistic(window_s: float) -> Statistic:
    """Sum of the values over a fixed window: e.g. output tokens per second of a step."""

    def statistic(a: np.ndarray) -> np.ndarray:
        return a.sum(axis=-1) / window_s

    return statistic


@dataclass(frozen=True)
class RatioCI:
    ratio: float  # statistic(candidate) / statistic(baseline), on the observed samples
    low: float
    high: float
    confidence: float
    n_baseline: int
    n_candidate: int


def bootstrap_ratio(
    baseline: np.ndarray,
    candidate: np.ndarray,
    statistic_baseline: Statistic,
    statistic_candidate: Statistic | None = None,
    *,
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> RatioCI:
    """Percentile-bootstrap CI of statistic(candidate) / statistic(baseline); each side resampled on its own."""
    statistic_candidate = statistic_candidate or statistic_baseline
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    if base.size == 0 or cand.size == 0:
        raise ValueError("both samples must be non-empty")
    rng = np.random.default_rng(seed)
    observed_base = float(statistic_baseline(base[None, :])[0])
    observed_cand = float(statistic_candidate(cand[None, :])[0])
    boot_base = statistic_baseline(base[rng.integers(0, base.size, size=(resamples, base.size))])
    boot_cand = statistic_candidate(cand[rng.integers(0, cand.size, size=(resamples, cand.size))])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot_cand / boot_base
    ratios = ratios[np.isfinite(ratios)]
    ratio = observed_cand / observed_base if observed_base else float("inf")
    if ratios.size == 0:
        return RatioCI(ratio, float("nan"), float("nan"), confidence, base.size, cand.size)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return RatioCI(ratio, float(low), float(high), confidence, base.size, cand.size)

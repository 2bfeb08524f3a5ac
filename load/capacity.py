"""`bench --find-max-rate`: the highest open-loop rate a server sustains within its SLOs, by a bounded search.

A probe is one open-loop step at a rate. It passes when the fraction of its measured requests that succeeded and
met every SLO (errors and timeouts count as misses) is at least `--goodput-fraction`. The search doubles the rate
from `--search-start` until a probe fails (or halves it until one passes), then bisects (geometric midpoint)
between the highest passing and the lowest failing rate until they are within `--search-tolerance` of each other,
the time budget would be overrun by another probe, or `--max-probes` is reached. The answer is the highest
passing rate; its uncertainty is the bracket [highest pass, lowest fail] (the true limit lies between), and each
probe's goodput fraction carries a 95 % Wilson interval, so a probe too small to tell pass from fail is flagged
(`marginal`) rather than trusted silently.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ollama_conformance.errors import UsageError

Z95 = 1.959964


def wilson(good: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion good/n ((0, 1) when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = good / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class SearchOptions:
    start_rps: float = 1.0
    goodput_fraction: float = 0.9
    tolerance: float = 0.05
    budget_s: float = 300.0
    max_rps: float = 1000.0
    min_rps: float = 0.01
    max_probes: int = 20

    def validate(self) -> None:
        if self.start_rps <= 0 or self.max_rps <= 0 or self.start_rps > self.max_rps:
            raise UsageError("--search-start must be > 0 and <= --max-rate")
        if not 0 < self.goodput_fraction <= 1:
            raise UsageError("--goodput-fraction must be in (0, 1]")
        if not 0 < self.tolerance < 1:
            raise UsageError("--search-tolerance must be in (0, 1)")
        if self.budget_s <= 0:
            raise UsageError("--search-budget must be > 0")
        if self.max_probes < 2:
            raise UsageError("--max-probes must be >= 2")


@dataclass
class Probe:
    rate_rps: float
    step: str
    measured: int
    met_slo: int
    fraction: float
    fraction_ci95: tuple[float, float]
    passed: bool
    marginal: bool
    wall_s: float


@dataclass
class SearchResult:
    goodput_fraction: float
    tolerance: float
    budget_s: float
    probes: list[Probe] = field(default_factory=list)
    max_rate_rps: float | None = None  # highest passing rate
    lowest_failing_rps: float | None = None
    relative_uncertainty: float | None = None  # (lowest failing - highest passing) / highest passing
    converged: bool = False
    stopped_because: str = ""
    spent_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["probes"] = [{**asdict(p), "fraction_ci95": list(p.fraction_ci95)} for p in self.probes]
        return out


def probe_from_step(rate: float, step: dict[str, Any], fraction: float, wall_s: float) -> Probe:
    slo = step.get("slo") or {}
    n, good = int(slo.get("measured", 0)), int(slo.get("met", 0))
    share = good / n if n else 0.0
    lo, hi = wilson(good, n)
    passed = n > 0 and share >= fraction
    return Probe(rate_rps=rate, step=step["name"], measured=n, met_slo=good, fraction=share, fraction_ci95=(lo, hi),
                 passed=passed, marginal=lo < fraction <= hi, wall_s=wall_s)


def find_max_rate(run_step: Callable[[float], dict[str, Any]], opts: SearchOptions,
                  log: Callable[[str], None] = lambda _: None) -> SearchResult:
    """Search with `run_step(rate) -> step dict` (see the module doc); never exceeds the budget knowingly."""
    result = SearchResult(goodput_fraction=opts.goodput_fraction, tolerance=opts.tolerance, budget_s=opts.budget_s)
    t0 = time.monotonic()
    rate = opts.start_rps
    lo: float | None = None
    hi: float | None = None
    longest = 0.0
    while True:
        spent = time.monotonic() - t0
        if result.probes and spent + longest > opts.budget_s:
            result.stopped_because = f"time budget: another probe (~{longest:.0f} s) would pass {opts.budget_s:g} s"
            break
        if len(result.probes) >= opts.max_probes:
            result.stopped_because = f"{opts.max_probes} probes"
            break
        t = time.monotonic()
        step = run_step(rate)
        wall = time.monotonic() - t
        longest = max(longest, wall)
        probe = probe_from_step(rate, step, opts.goodput_fraction, wall)
        result.probes.append(probe)
        log(f"bench: probe {rate:.4g} req/s: {probe.met_slo}/{probe.measured} within SLO "
            f"({probe.fraction:.0%}, 95% CI {probe.fraction_ci95[0]:.0%}-{probe.fraction_ci95[1]:.0%}) -> "
            f"{'pass' if probe.passed else 'fail'}{' (marginal)' if probe.marginal else ''}")
        if probe.passed:
            lo = rate if lo is None else max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
        if lo is not None and hi is not None and lo >= hi:
            # noise: a higher rate passed after a lower one failed; trust the later, lower failure
            lo = max((p.rate_rps for p in result.probes if p.passed and p.rate_rps < hi), default=None)
        if hi is None:
            if rate >= opts.max_rps:
                result.stopped_because = f"passed at --max-rate {opts.max_rps:g} req/s"
                break
            rate = min(rate * 2, opts.max_rps)
        elif lo is None:
            if rate <= opts.min_rps:
                result.stopped_because = f"fails even at {rate:.3g} req/s"
                break
            rate = max(rate / 2, opts.min_rps)
        else:
            if (hi - lo) / lo <= opts.tolerance:
                result.converged = True
                result.stopped_because = f"bracket within {opts.tolerance:.0%}"
                break
            rate = math.sqrt(lo * hi)
    result.max_rate_rps = lo
    result.lowest_failing_rps = hi
    if lo is not None and hi is not None:
        result.relative_uncertainty = (hi - lo) / lo
    result.spent_s = time.monotonic() - t0
    return result

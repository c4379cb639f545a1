"""Confidence intervals for the differences between interleaved paths.

The unit of resampling is the *round*: every path had one slice in each round,
close in time, so the machine's noise of that moment (another tenant, a timer,
a CPU frequency change) fell on all of them. A paired block bootstrap draws
rounds with replacement, the same rounds for every path, merges each path's
slices of the drawn rounds, and reads the metric from the merge; the spread of
(path - baseline) over the draws gives a percentile interval. Resampling
transactions instead would treat a burst of slow ones as independent samples
and give intervals far too narrow.

Quantiles of a draw are read from per-round counts on one log-spaced bin grid
(each bin ``bin_ratio`` wide), so a draw is one matrix product, not a sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vnetdiag.model.compare import Difference, Inference

METHOD = "paired bootstrap over rounds, percentile interval"
MIN_ROUNDS = 3
"""Below this the rounds say nothing about their spread: no interval."""
QUANTILES = {"p50_us": 0.50, "p99_us": 0.99, "p999_us": 0.999}


@dataclass(frozen=True, kw_only=True, eq=False)
class PathRounds:
    """One path's per-round material (index = round)."""

    label: str
    latency_us: Sequence[np.ndarray]
    lost: Sequence[int]
    trials: Sequence[int]
    transactions: Sequence[int]
    duration_s: Sequence[float]


def _grid(paths: Sequence[PathRounds], ratio: float) -> np.ndarray:
    values = [a for p in paths for a in p.latency_us if len(a)]
    if not values:
        return np.array([1.0, ratio])
    lo = max(min(float(a.min()) for a in values), 1e-3)
    hi = max(float(a.max()) for a in values)
    n = max(1, int(np.ceil(np.log(hi / lo) / np.log(ratio))) + 1)
    return lo * ratio ** np.arange(n + 1)


def _counts(p: PathRounds, edges: np.ndarray) -> np.ndarray:
    """rounds x bins counts (the last edge is inclusive)."""
    out = np.zeros((len(p.latency_us), len(edges) - 1))
    for r, a in enumerate(p.latency_us):
        idx = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, len(edges) - 2)
        out[r] = np.bincount(idx, minlength=len(edges) - 1)
    return out


def _quantiles(merged: np.ndarray, edges: np.ndarray, q: float) -> np.ndarray:
    """Per draw (row), the q-quantile: the first bin whose cumulative count
    reaches q of the total (HDR's "value at percentile"), read at its geometric middle."""
    cum = np.cumsum(merged, axis=1)
    total = cum[:, -1:]
    idx = np.argmax(cum >= np.maximum(q * total, 1e-12), axis=1)
    mids = np.sqrt(edges[:-1] * edges[1:])
    out = mids[idx]
    out[total[:, 0] == 0] = np.nan
    return out


def _ratio(weights: np.ndarray, num: Sequence[float], den: Sequence[float]) -> np.ndarray:
    n = weights @ np.asarray(num, dtype=float)
    d = weights @ np.asarray(den, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def draws(paths: Sequence[PathRounds], *, resamples: int, seed: int, bin_ratio: float) -> dict[str, np.ndarray]:
    """{metric: paths x resamples array} of each metric over the same drawn rounds."""
    rounds = len(paths[0].latency_us)
    if any(len(p.latency_us) != rounds for p in paths):
        raise ValueError("every path needs the same number of rounds")
    rng = np.random.default_rng(seed)
    # How often each round is drawn in each resample: the same weights for every path (paired).
    weights = rng.multinomial(rounds, np.full(rounds, 1 / rounds), size=resamples).astype(float)
    edges = _grid(paths, bin_ratio)
    out: dict[str, list[np.ndarray]] = {m: [] for m in (*QUANTILES, "loss_rate", "rate_per_s")}
    for p in paths:
        merged = weights @ _counts(p, edges)
        for name, q in QUANTILES.items():
            out[name].append(_quantiles(merged, edges, q))
        out["loss_rate"].append(_ratio(weights, p.lost, p.trials))
        out["rate_per_s"].append(_ratio(weights, p.transactions, p.duration_s))
    return {m: np.vstack(v) for m, v in out.items()}


def differences(paths: Sequence[PathRounds], estimates: Sequence[dict[str, float]], *, level: float = 0.95,
                resamples: int = 2000, seed: int = 0,
                bin_ratio: float = 1.005) -> tuple[tuple[Difference, ...], Inference]:
    """Each path after the first against the first, for every metric.

    ``estimates[i][metric]``: path i's value from all of its data (the point
    estimate of the difference is the plain difference of these); the interval
    comes from the bootstrap draws. With fewer than ``MIN_ROUNDS`` rounds the
    interval is None and nothing is called significant."""
    rounds = len(paths[0].latency_us) if paths else 0
    inference = Inference(method=METHOD, level=level, resamples=resamples, seed=seed, rounds=rounds,
                          bin_ratio=bin_ratio)
    if len(paths) < 2:
        return (), inference
    got = draws(paths, resamples=resamples, seed=seed, bin_ratio=bin_ratio) if rounds >= MIN_ROUNDS else None
    alpha = (1 - level) / 2
    out = []
    for i in range(1, len(paths)):
        for metric in (*QUANTILES, "loss_rate", "rate_per_s"):
            estimate = estimates[i][metric] - estimates[0][metric]
            low = high = None
            if got is not None:
                diff = got[metric][i] - got[metric][0]
                diff = diff[~np.isnan(diff)]
                if len(diff):
                    low, high = (float(v) for v in np.quantile(diff, [alpha, 1 - alpha]))
            significant = low is not None and high is not None and (low > 0 or high < 0)
            out.append(Difference(path=paths[i].label, baseline=paths[0].label, metric=metric,  # type: ignore[arg-type]
                                  estimate=float(estimate), low=low, high=high, level=level,
                                  significant=significant))
    return tuple(out), inference

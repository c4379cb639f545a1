"""A robust learned baseline of one rate: EWMA of the level and of the absolute
deviation (an exponentially weighted MAD).

For each new rate r (per second):

    scale     = max(1.4826 * dev, rel_floor * mean, abs_floor_per_s)
    threshold = mean + k * scale
    anomalous = r > threshold

then the baseline learns from r clipped to the threshold (a Huber-style
update), so a burst moves it only a little and a lasting change is absorbed
slowly (after roughly 1/alpha cycles it becomes the new normal):

    x    = min(r, threshold)
    dev  = dev  + alpha * (|x - mean| - dev)
    mean = mean + alpha * (x - mean)

During the watch's warm-up the update is a plain running mean (weight
1/n, no clipping), so what is already there when the watch starts is learned
at once; series that first move later start from a zero baseline.

1.4826 makes the MAD comparable to a standard deviation for normal noise. The
floors stop a baseline of exactly zero (a quiet counter) from calling one
stray drop an anomaly; the detector also requires a minimum count per interval.
"""

from __future__ import annotations

from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826


@dataclass(slots=True)
class Baseline:
    mean: float = 0.0
    dev: float = 0.0
    samples: int = 0

    def threshold(self, *, k: float, rel_floor: float, abs_floor: float) -> float:
        scale = max(MAD_TO_SIGMA * self.dev, rel_floor * self.mean, abs_floor)
        return self.mean + k * scale

    def observe(self, rate: float, *, alpha: float, k: float, rel_floor: float, abs_floor: float,
                learning: bool = False) -> float:
        """Learn from ``rate``; return the threshold it was judged against.
        ``learning`` (the watch's warm-up): plain running mean, no clipping, so
        rates that are there from the start are the baseline at once."""
        thr = self.threshold(k=k, rel_floor=rel_floor, abs_floor=abs_floor)
        if learning:
            alpha = max(alpha, 1.0 / (self.samples + 1))
        x = rate if learning or not self.samples else min(rate, thr)
        self.dev += alpha * (abs(x - self.mean) - self.dev)
        self.mean += alpha * (x - self.mean)
        self.samples += 1
        return thr

    def negligible(self) -> bool:
        """Decayed to (almost) nothing: the state can be dropped and re-learned from zero."""
        return self.mean < 1e-6 and self.dev < 1e-6

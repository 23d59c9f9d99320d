"""Comparisons as the field's careful papers make them: paired by seed, a mean difference with its 95%
confidence interval, and a verdict that may be "inconclusive".

Two runs with the same seed share their data split, initialisation and K-means seeds, so the
difference of their scores removes what the seed alone does. The interval is Student's t on those
differences (``scipy.stats.t``); with fewer than two pairs there is none. A claim "A beats B" holds
when the whole interval is above 0, does not hold when it is below 0, and is inconclusive when it
crosses 0 (or cannot be computed): absence of evidence, not evidence of absence.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def paired(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """The seeds both ``a`` and ``b`` (scores indexed by seed) have a value for: columns a, b, by seed.
    A seed twice on one side is refused: which of its runs to pair would be a guess."""
    for name, side in (("a", a), ("b", b)):
        if side.index.has_duplicates:
            raise ValueError(f"side {name} has seed {side.index[side.index.duplicated()][0]} twice")
    frame = pd.concat({"a": a.astype(float), "b": b.astype(float)}, axis=1, join="inner").dropna()
    return frame.sort_index()


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean of ``values``; NaN bounds below two values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    sem = float(values.std(ddof=1) / math.sqrt(len(values)))
    if sem == 0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def verdict(low: float, high: float) -> str:
    """"holds" (the interval is above 0), "does not hold" (below 0), else "inconclusive"."""
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if low > 0:
        return HOLDS
    if high < 0:
        return FAILS
    return INCONCLUSIVE


def compare(a: pd.Series, b: pd.Series) -> dict:
    """A against B, paired by seed: ``{"n", "a_mean", "b_mean", "diff", "low", "high", "verdict"}``."""
    pairs = paired(a, b)
    diff, low, high = mean_interval(pairs["a"] - pairs["b"])
    return {"n": len(pairs), "a_mean": float(pairs["a"].mean()) if len(pairs) else math.nan,
            "b_mean": float(pairs["b"].mean()) if len(pairs) else math.nan,
            "diff": diff, "low": low, "high": high, "verdict": verdict(low, high)}


def difference_text(result: dict) -> str:
    """"+0.031 [+0.012, +0.050] (n=5)", or "—" when nothing was paired."""
    if not result["n"]:
        return "—"
    if math.isnan(result["low"]):
        return f"{result['diff']:+.3f} (n={result['n']}, no interval)"
    return f"{result['diff']:+.3f} [{result['low']:+.3f}, {result['high']:+.3f}] (n={result['n']})"


def interval_text(values) -> str:
    """"0.812 [0.790, 0.834] (n=5)": a mean with its 95% interval; "—" without values."""
    values = pd.Series(values, dtype=float).dropna()
    mean, low, high = mean_interval(values)
    if not len(values):
        return "—"
    if math.isnan(low):
        return f"{mean:.3f} (n={len(values)})"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}] (n={len(values)})"


def proportion_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(rate, low, high): a success rate with its Clopper-Pearson (exact) interval."""
    if trials == 0:
        return math.nan, math.nan, math.nan
    interval = stats.binomtest(successes, trials).proportion_ci(confidence, method="exact")
    return successes / trials, float(interval.low), float(interval.high)

"""The seed's confidence interval for a score averaged over N seeded runs (dissertation section 4.2.1):
Student's t, because the runs' spread is estimated from the few runs themselves."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from scipy import stats

from musictag.errors import MusictagError


def confidence_interval(values: Iterable[float], level: float) -> tuple[float, float]:
    """(mean, half width) of the two-sided Student-t interval for the mean of N runs: t * s / sqrt(N)."""
    values = np.asarray(list(values), dtype=np.float64)
    if not 0 < level < 1:
        raise MusictagError(f"confidence level: need a number between 0 and 1, got {level!r}")
    if len(values) < 2:
        raise MusictagError(f"confidence interval: need at least 2 runs, got {len(values)}")
    if not np.isfinite(values).all():
        raise MusictagError("confidence interval: a run's value is NaN or infinite")
    t = stats.t.ppf((1 + level) / 2, df=len(values) - 1)
    return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(len(values)))

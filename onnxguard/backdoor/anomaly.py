"""The outlier statistic across classes (Neural Cleanse, Wang et al. 2019).

Each class's reversed trigger has a size; a backdoor target needs a much
smaller trigger than the other classes. The anomaly index of class ``c`` is
``(median - size_c) / (1.4826 * MAD)`` (only the small side counts: positive
when the trigger is smaller than the median). With few classes the MAD can be
near zero by chance; it is floored at ``floor`` times the median so that two
classes with almost the same size do not make a third look infinitely odd.
"""

from __future__ import annotations

import numpy as np

CONSISTENCY = 1.4826  # makes the MAD estimate the standard deviation of a normal distribution
MAD_FLOOR = 0.1


def anomaly_indices(sizes: np.ndarray, floor: float = MAD_FLOOR) -> np.ndarray:
    """Per-class anomaly index; nan where the size is unknown. Needs at least 3 known sizes."""
    s = np.asarray(sizes, dtype=np.float64)
    out = np.full(s.shape, np.nan)
    ok = np.isfinite(s)
    if ok.sum() < 3:
        return out
    med = float(np.median(s[ok]))
    mad = CONSISTENCY * float(np.median(np.abs(s[ok] - med)))
    mad = max(mad, floor * abs(med), 1e-12)
    out[ok] = (med - s[ok]) / mad
    return out

"""The outlier statistic across classes (Neural Cleanse, Wang et al. 2019).

Each class's reversed trigger has a size; a backdoor target needs a much
smaller trigger than the other classes. The anomaly index of class ``c`` is
``(median - size_c) / (1.4826 * MAD)`` (only the small side counts: positive
when the trigger is smaller than the median). With few classes the MAD can be
near zero by chance; it is floored at ``floor`` times the median so that two
classes with almost the same size do not make a third look infinitely odd.

The floor is per family. For the image searches (``patch``, ``blend``) it is 20% of
the median: the zeroth-order search's sizes for clean classes spread by about
that much from class to class and run to run, so with the default threshold of 3
a class is flagged only when its trigger is under about 40% of the median size
(on the benchmark zoo, clean classes stay above 55%, planted triggers below 35%).
The few-feature tabular sizes are tighter and use 10%.
"""

from __future__ import annotations

import numpy as np

CONSISTENCY = 1.4826  # makes the MAD estimate the standard deviation of a normal distribution
MAD_FLOOR = 0.1
FAMILY_FLOOR = {"patch": 0.2, "blend": 0.2, "features": 0.1}


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

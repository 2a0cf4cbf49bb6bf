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

The ``square`` family (:mod:`.squares`) is scored on log areas. A linear MAD index
is bounded by ``median / MAD`` however small the trigger is: with clean classes
spread by +-30%, even a trigger of area 0 scores about 2.2. Sizes are scale
quantities that spread multiplicatively, so the log is the natural scale; its
floor of 0.3 log units makes a class with the floor binding flagged at index 3
when its area is under ``exp(-0.9)`` = 41% of the median, the same rule as the
linear 20% floor above. On the fixtures and the zoo clean classes' log areas spread
by 0.1 to 0.3 and the easiest clean class sits at about 55-60% of the median.

A class's index is its largest family index (:func:`class_indices`) among the families whose reversed
trigger works on held-back samples (every family's trigger is checked). Two other rules were tried on the
cached searches of the null and the zoo and dropped. Dividing each family's index by its spread on clean
models (the 90th percentile of the null's largest index of that family) found no more backdoors on the zoo
(10 of 18 either way) and raised the leave-one-out false-positive rate on the image null from 2 to 3 of 23:
23 clean models estimate a family's tail too noisily for a scale to help. A root-sum-square of the
families' positive indices was tried (a planted trigger often shows in several families) and dropped:
on the zoo it found one more backdoor (11 against 10 of 18), but it flagged the clean test fixture
``clean_b``, whose class 4 is moderately easy in two families at once (square 2.8, smooth 2.4: the
combination 3.7 against a threshold of 3.54). The families are not independent: a naturally easy
class is easy for any perturbation, so adding their evidence counts it twice.

The ``warp`` family (:mod:`.warp`, RMS displacement in pixels) is on log sizes too, for the same
reason (a scale quantity), with the square family's floor of 0.3 log units rather than the smooth
family's 0.5: classes no warp reaches are left out of its statistic rather than censored (most
classes of a clean model can be out of reach), and on the reached ones the clean classes' log
sizes spread widely (MAD 0.3 to 0.5 log units on the 16x16 CNN fixtures of ``tests/backdoor/test_warp.py``),
so the floor rarely binds; it keeps a model whose few reached classes happen to agree from making
a slightly smaller one look odd.

The ``margin`` family (:mod:`.margin`, MM-BD) measures the largest score margin per class, larger being more
anomalous, and is scored by :func:`margin_indices` (``-log10 p`` against a Gamma fit to the other classes'
margins). On the 40 clean image models of the null its largest index is 1.73, far under the size families'
(up to 5.5). Its ``-log10 p`` is a (nominal) p-value of its own, so it gets its own level: a class is flagged
on it at ``p < 0.001`` (:data:`MARGIN_FLAG_INDEX`), a nominal false-positive rate 50 times below the size
families' 5%, so that flagging on either keeps the union at about the size families' rate. It enters the common
index scaled by :func:`margin_scale` (threshold / 3), so one index and one threshold still decide (and grade).
On the null no clean model comes near (1.73 at most: p = 0.019); the leave-one-out rate is unchanged, the
margin level being fixed rather than fitted. Two other rules were measured on the cached searches and dropped:
the raw ``-log10 p`` on the common threshold (4.32) flags only a margin far out of line (the zoo's image blend,
5.46), and scaling it by the ratio of the two families' null thresholds (about 3.7) flagged the clean zoo model
``clean_d16_mlp_b`` (1.49, p = 0.03; measured before the spread floor of :func:`margin_indices`). The level of 0.001 was chosen after the zoo's WaNet model (3.08) had been
seen, so that detection is not an independent confirmation of the level.

With two or three classes a MAD across classes means little (:func:`reference_indices`):
each class's trigger is compared with what the data itself needs to change class
(images: also with the other classes' triggers, :func:`few_image_indices`).
Thresholds are not fixed here: :mod:`.null` calibrates them on clean models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONSISTENCY = 1.4826  # makes the MAD estimate the standard deviation of a normal distribution
MAD_FLOOR = 0.1
FAMILY_FLOOR = {"patch": 0.2, "blend": 0.2, "features": 0.1, "square": 0.3, "smooth": 0.5, "warp": 0.3}
LOG_FAMILIES = {"square", "smooth", "warp"}  # statistic on log sizes; the floor is then in log units
MARGIN_INDEX_CAP = 30.0  # the margin family's -log10 p is capped here
MARGIN_MIN_CV = 0.25  # the Gamma null's spread is floored at this coefficient of variation (see margin_indices)
MARGIN_FLAG_INDEX = 3.0  # the margin family flags a class at -log10 p > 3 (p < 0.001), whatever the threshold


def margin_scale(threshold: float) -> float:
    """The factor that puts the margin family's ``-log10 p`` on the common index scale: a class's margin index
    crosses ``threshold`` exactly when ``p < 10 ** -MARGIN_FLAG_INDEX`` (see the module docstring)."""
    return float(threshold) / MARGIN_FLAG_INDEX


def family_indices(sizes: np.ndarray, family: str) -> np.ndarray:
    """The anomaly index of one trigger family (log scale for :data:`LOG_FAMILIES`; ``margin``: :func:`margin_indices`)."""
    if family == "margin":
        return margin_indices(sizes)
    if family in LOG_FAMILIES:
        s = np.asarray(sizes, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return anomaly_indices(np.log(np.where(s > 0, s, np.nan)), FAMILY_FLOOR[family], relative=False)
    return anomaly_indices(sizes, FAMILY_FLOOR[family])


def anomaly_indices(sizes: np.ndarray, floor: float = MAD_FLOOR, relative: bool = True) -> np.ndarray:
    """Per-class anomaly index; nan where the size is unknown. Needs at least 3 known sizes.
    The MAD is floored at ``floor * |median|`` (``relative``) or at ``floor`` itself."""
    s = np.asarray(sizes, dtype=np.float64)
    out = np.full(s.shape, np.nan)
    ok = np.isfinite(s)
    if ok.sum() < 3:
        return out
    med = float(np.median(s[ok]))
    mad = CONSISTENCY * float(np.median(np.abs(s[ok] - med)))
    mad = max(mad, floor * abs(med) if relative else floor, 1e-12)
    out[ok] = (med - s[ok]) / mad
    return out


def margin_indices(margins: np.ndarray, cap: float = MARGIN_INDEX_CAP, min_cv: float = MARGIN_MIN_CV) -> np.ndarray:
    """Per-class index of the maximum-margin family (:mod:`.margin`): ``-log10 p``, ``p`` the chance that the
    largest of the other ``K - 1`` classes' maximum margins, drawn from a Gamma distribution fitted to them
    (MM-BD's null), reaches class ``c``'s: ``p = 1 - F(m_c) ** (K - 1)``. Only the large side counts: a class
    whose margin is unremarkable gets an index near 0. A MAD index is fooled here by weak models: a 3x32x32
    MLP whose classes reach margins of 0.1 to 9 (median 1) scored 4.8 on its largest, against at most 2.8 on
    any clean CNN; the Gamma fit sees the heavy spread and gives it 0.6. The fitted spread is floored at a
    coefficient of variation of ``min_cv``: from 3 to 9 values a Gamma fit can come out far too tight. A clean
    4-class linear model on 3x224x224 whose other three classes reached margins of 3.98 to 4.00 scored its
    fourth (5.73, natural weight differences) at the cap; with the floor it scores 0.8. The clean 10-class
    models of the null spread by about 0.2 to 0.35. nan where fewer than 3 other classes have a positive
    margin or the fit fails; capped at ``cap`` (p = 1e-30 and below are all "certain")."""
    m = np.asarray(margins, dtype=np.float64)
    out = np.full(m.shape, np.nan)
    for c in range(len(m)):
        if not np.isfinite(m[c]):
            continue
        others = np.delete(m, c)
        others = others[np.isfinite(others) & (others > 0)]
        if others.size < 3:
            continue
        if m[c] <= 0:
            out[c] = 0.0
            continue
        try:
            with np.errstate(all="ignore"):
                k, _, scale = stats.gamma.fit(others, floc=0.0) if np.ptp(others) > 0 else (np.inf, 0.0, 0.0)
                if k > 1.0 / min_cv**2:  # too tight to trust from a few values: widen to the floor, same mean
                    k, scale = 1.0 / min_cv**2, float(np.mean(others)) * min_cv**2
                log_cdf = float(stats.gamma.logcdf(m[c], k, loc=0.0, scale=scale))
        except (ValueError, RuntimeError, FloatingPointError):
            continue
        if not np.isfinite(log_cdf) and log_cdf != -np.inf:
            continue
        # p = 1 - F^(K-1), computed from log F so that p near 0 keeps its digits: -expm1((K-1) log F)
        p = -np.expm1(others.size * log_cdf) if log_cdf > -np.inf else 1.0
        out[c] = max(0.0, min(cap, -float(np.log10(p)))) if p > 0 else cap  # p = 1 gives 0, not -0
    return out


def reference_indices(sizes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-class index for models with few classes: ``log2(reference / size)``, how many times smaller the
    reversed trigger is than the natural change that reaches the same class (the reference search: the same
    number of features, each taken from a clean sample of the class). nan where either is unknown."""
    s = np.asarray(sizes, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log2(np.maximum(r, 0.25) / np.maximum(s, 0.25))
    return np.where(np.isfinite(s) & np.isfinite(r), out, np.nan)


def class_indices(stack: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-class index from a (families, classes) stack of family indices (nan = not measured): the largest
    measured family index among the families ``valid`` marks (the ones whose trigger works on held-back
    samples; None: all); nan where no such family measured the class."""
    a = np.asarray(stack, dtype=np.float64)
    if valid is not None:
        a = np.where(np.asarray(valid, dtype=bool), a, np.nan)
    known = np.isfinite(a)
    with np.errstate(all="ignore"):
        top = np.max(np.where(known, a, -np.inf), axis=0)
    return np.where(known.any(axis=0), top, np.nan)


UNCHECKED_FAMILIES = frozenset({"margin"})  # families with no trigger to check on held-back samples: measured is "works"


@dataclass
class ModelStatistic:
    """The model's statistic from its (families, classes) stack of family indices and which family's trigger works
    on held-back samples; shared by the search and by the benchmarks that rescore cached searches."""

    class_index: np.ndarray  # per class: its largest index among working families, else among all; nan: unmeasured
    validated: np.ndarray  # per class: some working family measured it
    statistic: float | None  # the largest validated class index; min(0, largest unvalidated) when none validates
    unvalidated_max: float | None  # the largest class index over all families, working or not

    def flagged(self, threshold: float) -> list[int]:
        """Validated classes above ``threshold``, the most anomalous first."""
        idx = [t for t in np.flatnonzero(self.validated) if self.class_index[t] > threshold]
        return [int(t) for t in sorted(idx, key=lambda t: -self.class_index[t])]


def model_statistic(stack: np.ndarray, works: np.ndarray) -> ModelStatistic:
    """See :class:`ModelStatistic`; the class index rule is :func:`class_indices`."""
    with np.errstate(all="ignore"):
        ai_all = class_indices(stack)
        ai_ok = class_indices(stack, works)
    ok = np.isfinite(ai_ok)
    ai = np.where(ok, ai_ok, ai_all)
    finite = ai_all[np.isfinite(ai_all)]
    unvalidated = float(finite.max()) if finite.size else None
    stat = float(ai_ok[ok].max()) if ok.any() else (min(0.0, unvalidated) if unvalidated is not None else None)
    return ModelStatistic(ai, ok, stat, unvalidated)


def few_image_indices(sizes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-class index for image models with 2 or 3 classes: the smaller of ``log2(reference / size)`` (how many
    times smaller the reversed trigger is than the natural change of the same kind, :mod:`.natural`) and
    ``log2(others / size)`` (than the median reversed trigger of the other classes, where known). A planted
    trigger is small on both counts; a clean model's adversarial patch can be far below the natural window
    (clean 2-class CNNs: index ~3.4 on the first count alone) but not far below the other class's patch."""
    s = np.asarray(sizes, dtype=np.float64)
    nat = reference_indices(s, reference)
    out = nat.copy()
    for t in range(len(s)):
        others = np.delete(s, t)
        others = others[np.isfinite(others)]
        if np.isfinite(nat[t]) and others.size:
            out[t] = min(nat[t], float(np.log2(max(float(np.median(others)), 0.25) / max(s[t], 0.25))))
    return out

"""Few-feature trigger search for tabular inputs.

A tabular backdoor sets a few features to out-of-distribution values (the ends
of, or a combination absent from, the clean data's range). For a candidate
target ``t`` the search grows a feature set greedily: at each round it tries
every unused feature at each end of its valid range (normalised 0 and 1),
stamped on top of the features already chosen, on clean samples of other
classes, and keeps the one that sends most of them to ``t`` (ties broken by
the mean cross-entropy towards ``t`` when scores are visible). It stops when
the success target is reached.

The trigger size is the number of features needed, interpolated within the
last round so that sizes are continuous (``k - 1 + (target - s_{k-1}) / (s_k -
s_{k-1})``): two features that reach 95% are smaller than two that barely reach 90%.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attacks.base import cross_entropy
from .probe import OutOfBudget, Probe

EXTREMES = (0.0, 1.0)


@dataclass
class FeatureTrigger:
    features: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    curve: list[float] = field(default_factory=list)  # success after 0, 1, 2, ... features
    size: float = np.inf
    success: float = 0.0
    queries: int = 0
    complete: bool = False

    def apply(self, x: np.ndarray) -> np.ndarray:
        """x (B, 1, 1, F) in the (C, H, W) view."""
        out = x.copy()
        for f, v in zip(self.features, self.values):
            out[..., f] = v
        return out

    def as_array(self) -> np.ndarray:
        return np.array([self.features, self.values], dtype=np.float64)


def search_features(
    probe: Probe, pool: np.ndarray, target: int, *, max_features: int, success_target: float, max_queries: int,
    active: np.ndarray | None = None,
) -> FeatureTrigger:
    """Greedy few-feature trigger towards ``target`` on ``pool`` (B, 1, 1, F)."""
    n_feat = pool.shape[-1]
    cand_feats = np.flatnonzero(active) if active is not None else np.arange(n_feat)
    trig = FeatureTrigger()
    start = probe.used
    try:
        probe.check(len(pool))
        _, lab0 = probe.run(pool)
        s_prev = float((lab0 == target).mean())
        trig.curve.append(s_prev)
        for k in range(1, max_features + 1):
            base = trig.apply(pool)
            options = [(f, v) for f in cand_feats if f not in trig.features for v in EXTREMES]
            if not options:
                break
            cost = len(options) * len(pool)
            if probe.used - start + cost > max_queries:
                break
            batch = np.concatenate([base.copy() for _ in options])
            for i, (f, v) in enumerate(options):
                batch[i * len(pool) : (i + 1) * len(pool), ..., f] = v
            scores, labels = probe.run(batch)
            hit = (labels.reshape(len(options), len(pool)) == target).mean(axis=1)
            key = hit.copy()
            if scores is not None:
                ce = cross_entropy(scores, np.full(len(scores), target)).reshape(len(options), len(pool)).mean(axis=1)
                key = hit - 1e-3 * np.minimum(ce, 100.0)  # success first, closeness second
            j = int(np.argmax(key))
            trig.features.append(int(options[j][0]))
            trig.values.append(float(options[j][1]))
            s_k = float(hit[j])
            trig.curve.append(s_k)
            if s_k >= success_target:
                frac = (success_target - s_prev) / max(s_k - s_prev, 1e-9)
                trig.size = (k - 1) + float(np.clip(frac, 0.0, 1.0))
                trig.success = s_k
                trig.complete = True
                break
            s_prev = s_k
    except OutOfBudget:
        pass
    if not trig.complete:
        best = max(trig.curve) if trig.curve else 0.0
        trig.success = best
        trig.size = float(max_features + 1)  # not reached within max_features: larger than any found
    trig.queries = probe.used - start
    return trig

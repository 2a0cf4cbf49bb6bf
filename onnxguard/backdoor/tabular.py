"""Few-feature trigger search for tabular inputs.

A tabular backdoor sets a few features to values the clean data does not hold:
beyond the data's range, or a rare value inside it. For a candidate target ``t``
the search grows a feature set greedily: at each round it tries every unused
feature at each of its candidate values (:func:`candidate_values`: the data's
range extended by ``EXTEND_IQR`` interquartile ranges at both ends, or the
policy's feature bounds; the data's own ends; and rare in-range values, the
midpoints of the largest gaps between the data's values and the centres of the
emptiest histogram bins), stamped on top of the features already chosen, on
clean samples of other classes, and keeps the one that sends most of them to
``t`` (ties broken by the mean cross-entropy towards ``t`` when scores are
visible). It stops when the success target is reached.

The trigger size is the number of features needed, each weighted by how far
its value lies outside the data (:func:`value_cost`), interpolated within the last
round so that sizes are continuous (``sum of earlier costs + cost_k (target - s_{k-1}) /
(s_k - s_{k-1})``). In the round that reaches the target the cheapest option that
does is taken.

The reference search (``paired``) asks the same question with natural values: each
sample takes the feature's value from a random clean sample of ``t``. Its size is
what the data itself needs to change class; a backdoor's trigger is much smaller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attacks.base import cross_entropy
from .probe import OutOfBudget, Probe

EXTEND_IQR = 3.0  # Tukey's "far out" fence: the searched range reaches this many IQRs beyond the data
OFFSETS = (0.5, 1.0, 1.5, 2.0, 3.0)  # beyond-range candidates, in IQRs past the data's ends
RARE_BINS = 20
RARE_PER_FEATURE = 2


def value_cost(offset_iqr: float) -> float:
    """What a feature set to a value costs in the trigger size: 1 inside the data's range, growing with the
    distance beyond it (1 + offset / 2: 1.25 at half an IQR, 2.5 at 3 IQRs). Any model can be pushed far
    enough out of its data to change class (extrapolation); a planted trigger needs no such distance."""
    return 1.0 + max(offset_iqr, 0.0) / 2.0


def extended_bounds(x: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature search bounds in raw units: the given bounds where set, else the data's range extended
    by :data:`EXTEND_IQR` IQRs (the range itself where the IQR is 0)."""
    q1, q3 = np.percentile(x, [25, 75], axis=0)
    dmin, dmax = x.min(axis=0), x.max(axis=0)
    iqr = np.where(q3 > q1, q3 - q1, dmax - dmin)
    elo, ehi = dmin - EXTEND_IQR * iqr, dmax + EXTEND_IQR * iqr
    if lo is not None:
        elo = np.asarray(lo, dtype=np.float64)
    if hi is not None:
        ehi = np.asarray(hi, dtype=np.float64)
    return elo, ehi


def candidate_values(z: np.ndarray, iqr: np.ndarray | None = None) -> list[list[tuple[float, str, float]]]:
    """Per feature, candidate ``(value, kind, cost)`` in the normalised search box of clean data ``z`` (N, F):
    values beyond the data's ends at :data:`OFFSETS` IQRs (``iqr``: per feature, in normalised units; the
    box's ends when unknown), the data's ends and rare in-range values (largest gaps, emptiest bins)."""
    out = []
    for f in range(z.shape[1]):
        v = np.sort(z[:, f])
        lo, hi = float(v[0]), float(v[-1])
        cands: dict[float, tuple[str, float]] = {}
        q = float(iqr[f]) if iqr is not None else 0.0
        if q > 0:
            for o in OFFSETS:
                for val in (lo - o * q, hi + o * q):
                    if 0.0 <= val <= 1.0:
                        cands.setdefault(round(val, 9), ("beyond range", value_cost(o)))
        for end, d in ((0.0, lo), (1.0, hi)):
            if abs(end - d) > 1e-9:
                cands.setdefault(end, ("beyond range", value_cost(abs(end - d) / q if q > 0 else EXTEND_IQR)))
        cands[round(lo, 9)] = ("data end", 1.0)
        cands[round(hi, 9)] = ("data end", 1.0)
        if hi - lo > 1e-9:
            u = np.unique(v)
            if len(u) >= 3:
                gaps = np.diff(u)
                for k in np.argsort(-gaps)[:RARE_PER_FEATURE]:
                    if gaps[k] > 0.05 * (hi - lo):
                        cands.setdefault(round(float(u[k] + gaps[k] / 2), 9), ("rare in-range", 1.0))
            counts, edges = np.histogram(v, bins=RARE_BINS, range=(lo, hi))
            inner = np.arange(1, RARE_BINS - 1)
            for k in inner[np.argsort(counts[inner], kind="stable")][:RARE_PER_FEATURE]:
                if counts[k] <= 0.01 * len(v):
                    cands.setdefault(round(float((edges[k] + edges[k + 1]) / 2), 9), ("rare in-range", 1.0))
        out.append(sorted((val, kind, cost) for val, (kind, cost) in cands.items()))
    return out


@dataclass
class FeatureTrigger:
    features: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # normalised, in the search box
    kinds: list[str] = field(default_factory=list)  # per feature: beyond range, data end, rare in-range
    costs: list[float] = field(default_factory=list)  # per feature: its share of the size (:func:`value_cost`)
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
    active: np.ndarray | None = None, values: list[list[tuple[float, str, float]]] | None = None, paired: np.ndarray | None = None,
    where: str = "feature search",
) -> FeatureTrigger:
    """Greedy few-feature trigger towards ``target`` on ``pool`` (B, 1, 1, F), over the candidate ``values``
    per feature (default: the box ends); with ``paired`` (B, F), the reference search with natural values."""
    n_feat = pool.shape[-1]
    cand_feats = np.flatnonzero(active) if active is not None else np.arange(n_feat)
    if values is None:
        values = [[(0.0, "box end", 1.0), (1.0, "box end", 1.0)] for _ in range(n_feat)]
    trig = FeatureTrigger()
    start = probe.used
    try:
        probe.check(len(pool))
        _, lab0 = probe.run(pool)
        s_prev = float((lab0 == target).mean())
        trig.curve.append(s_prev)
        for k in range(1, max_features + 1):
            base = pool.copy()
            for f in trig.features:
                base[..., f] = paired[:, None, None, f] if paired is not None else trig.values[trig.features.index(f)]
            if paired is not None:
                options = [(int(f), np.nan, "natural", 1.0) for f in cand_feats if f not in trig.features]
            else:
                options = [(int(f), v, kind, c) for f in cand_feats if f not in trig.features for v, kind, c in values[f]]
            if not options:
                break
            cost = len(options) * len(pool)
            if probe.used - start + cost > max_queries:
                probe.stopped(f"{where}, class {target}, round {k}", "per-class query share")
                break
            batch = np.concatenate([base.copy() for _ in options])
            for i, (f, v, _, _) in enumerate(options):
                batch[i * len(pool) : (i + 1) * len(pool), ..., f] = paired[:, None, None, f] if paired is not None else v
            scores, labels = probe.run(batch)
            hit = (labels.reshape(len(options), len(pool)) == target).mean(axis=1)
            key = hit.copy()
            if scores is not None:
                ce = cross_entropy(scores, np.full(len(scores), target)).reshape(len(options), len(pool)).mean(axis=1)
                key = hit - 1e-3 * np.minimum(ce, 100.0)  # success first, closeness second
            costs = np.array([o[3] for o in options])
            reach = hit >= success_target
            if reach.any():  # the cheapest option that reaches the target (closest to the data), best key among equals
                j = int(np.lexsort((-key, np.where(reach, costs, np.inf)))[0])
            else:
                j = int(np.argmax(key))
            trig.features.append(int(options[j][0]))
            trig.values.append(float(options[j][1]))
            trig.kinds.append(options[j][2])
            trig.costs.append(float(costs[j]))
            s_k = float(hit[j])
            trig.curve.append(s_k)
            if s_k >= success_target:
                frac = (success_target - s_prev) / max(s_k - s_prev, 1e-9)
                trig.size = float(sum(trig.costs[:-1]) + trig.costs[-1] * np.clip(frac, 0.0, 1.0))
                trig.success = s_k
                trig.complete = True
                break
            s_prev = s_k
    except OutOfBudget as exc:
        probe.stopped(f"{where}, class {target}", exc.reason)
    if not trig.complete:
        best = max(trig.curve) if trig.curve else 0.0
        trig.success = best
        trig.size = float(max_features + 1)  # not reached within max_features: larger than any found
    trig.queries = probe.used - start
    return trig

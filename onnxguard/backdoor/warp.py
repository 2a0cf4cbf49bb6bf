"""Warping triggers (WaNet, Nguyen & Tran 2021): the smallest smooth warp that sends samples to a class.

WaNet's trigger is no mask, blend or additive pattern: it moves pixels. A fixed
random ``k x k`` field of offsets (k = 4), upsampled to the image and scaled to
about a pixel, is applied with bilinear resampling; the poisoned model sends any
image warped by that field to the target, while clean models hardly react to
small smooth warps. Neural Cleanse misses it (BackdoorBench).

The search here reverses such a field per candidate target class ``t``:

* parameterisation: a direction ``theta`` of ``2 x k x k`` control offsets (rows
  and columns; :data:`GRID` = 4, 32 numbers), upsampled bilinearly to a
  displacement field ``(2, H, W)`` and normalised to an RMS displacement of one
  pixel; a trigger is ``magnitude x`` that field, applied by a numpy bilinear warp
  with the border clamped (no torch at scan time);
* size: the magnitude, the field's RMS displacement in pixels, at which the
  warp sends ``level`` of held samples of other classes to ``t`` (log-interpolated on
  the ladder :data:`MAGNITUDES`); the statistic is on log sizes (see :mod:`.anomaly`);
* warm start: a small dictionary of random directions, screened at two magnitudes
  on a few samples per class in one pass that serves every candidate target;
* search: antithetic NES over the direction (on the sphere) on the target
  class's cross-entropy (scores) or on the share of a mini-batch not yet sent to
  ``t`` (labels only), with the magnitude adapted on the fly like Neural Cleanse's
  lambda: shrunk while the warp works on the mini-batch, grown when it stalls;
* measure: the final and the best-working directions along the magnitude ladder
  on the confirmation samples (stopping at the first magnitude that reaches ``level``).

A random 32-dimensional direction rarely aligns with a planted field, so the
dictionary alone misses it; the NES refinement is what finds it (the tests compare
both at the same budget). Every query goes through the :class:`Probe`; each class's
cost is bounded by ``max_queries``; memory is O(batch x input) at any input size
(one displacement field of ``2 x H x W`` per candidate, batches bounded by
:func:`.triggers.batch_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attacks.base import cross_entropy
from .probe import OutOfBudget, Probe
from .smooth import _upsample, log_crossing
from .triggers import batch_rows

GRID = 4  # control points per side (WaNet's k)
MAGNITUDES = tuple(float(a) for a in np.geomspace(0.1, 6.0, 16))  # RMS displacement in pixels
DICTIONARY = 24  # random directions in the warm-start screen
SCREEN_MAGNITUDES = (0.5, 1.5)
START_MAGNITUDE = 1.5
BATCH = 12  # samples per NES mini-batch
PAIRS = 8  # antithetic pairs per NES step
SIGMA = 0.35  # NES perturbation (on the unit sphere of directions)
LR = 0.25  # NES step on the sphere
ADAPT_LEVEL = 0.6  # the magnitude tracks where the warp sends this share of the target level (the informative region)
CONFIRM = 40  # confirmation samples per class (other classes)


def unit(theta: np.ndarray) -> np.ndarray:
    return theta / max(float(np.linalg.norm(theta)), 1e-12)


def displacement(theta: np.ndarray, h: int, w: int) -> np.ndarray:
    """The direction ``theta`` (2, k, k) as a displacement field (2, H, W) in pixels with RMS displacement 1
    (RMS of the displacement vectors' lengths over the image)."""
    d = _upsample(np.asarray(theta, dtype=np.float64), h, w)
    rms = float(np.sqrt((d ** 2).sum(axis=0).mean()))
    return d / max(rms, 1e-12)


def warp(x: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Bilinear warp of x (B, C, H, W): ``out[.., i, j] = x[.., i + dy, j + dx]``, coordinates clamped to the image."""
    b, c, h, w = x.shape
    ii, jj = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    r = np.clip(ii + disp[0], 0.0, h - 1.0)
    q = np.clip(jj + disp[1], 0.0, w - 1.0)
    r0 = np.minimum(np.floor(r).astype(np.int64), h - 2) if h > 1 else np.zeros((h, w), np.int64)
    q0 = np.minimum(np.floor(q).astype(np.int64), w - 2) if w > 1 else np.zeros((h, w), np.int64)
    fr, fq = (r - r0).reshape(-1), (q - q0).reshape(-1)
    r1, q1 = np.minimum(r0 + 1, h - 1), np.minimum(q0 + 1, w - 1)
    xf = x.reshape(b, c, h * w)
    at = lambda rr, qq: xf[:, :, (rr * w + qq).reshape(-1)]  # noqa: E731
    out = (at(r0, q0) * (1 - fq) + at(r0, q1) * fq) * (1 - fr) + (at(r1, q0) * (1 - fq) + at(r1, q1) * fq) * fr
    return out.reshape(b, c, h, w)


@dataclass
class WarpTrigger:
    """A smooth warp: ``magnitude`` pixels (RMS) times the unit field of the direction ``theta`` (2, k, k)."""

    theta: np.ndarray
    magnitude: float
    shape: tuple[int, int]  # (H, W)

    def field(self) -> np.ndarray:
        return self.magnitude * displacement(self.theta, *self.shape)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.clip(warp(x, self.field()), 0.0, 1.0)

    def delta(self) -> np.ndarray:
        """The displacement field (2, H, W) in pixels: [0] rows (down), [1] columns (right)."""
        return self.field()


@dataclass
class WarpResult:
    magnitude: np.ndarray  # (K,) smallest RMS displacement (pixels) reaching the level; nan when not reached
    rate: np.ndarray  # (K,) confirmed rate at that magnitude
    triggers: dict[int, WarpTrigger] = field(default_factory=dict)
    curves: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # per class: (magnitude, rate) measured
    queries_per_class: dict[int, int] = field(default_factory=dict)
    queries: int = 0
    complete: bool = False  # every class asked for was searched (unreached classes keep nan: not in the statistic)


def _labels(probe: Probe, x: np.ndarray, fields: list[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
    """Scores (n_fields, len(x), K) or None, and labels (n_fields, len(x)), of every field applied to every sample."""
    chunk = max(1, batch_rows(x[0].size) // max(len(x), 1))
    sc, lab = [], []
    for i in range(0, len(fields), chunk):
        part = fields[i : i + chunk]
        s, lb = probe.run(np.concatenate([warp(x, d) for d in part]))
        lab.append(lb.reshape(len(part), len(x)))
        if s is not None:
            sc.append(s.reshape(len(part), len(x), -1))
    return (np.concatenate(sc) if sc else None), np.concatenate(lab)


def ladder(probe: Probe, x: np.ndarray, t: int, unit_field: np.ndarray, level: float,
           mags: tuple[float, ...] = MAGNITUDES, cap: int | None = None) -> tuple[float, list[tuple[float, float]]]:
    """Walk the magnitude ladder upwards on samples ``x`` until ``level`` of them go to ``t`` (or ``cap`` queries
    would be passed): (crossing, curve)."""
    curve: list[tuple[float, float]] = []
    for i, m in enumerate(mags):
        if cap is not None and (i + 1) * len(x) > cap:
            break
        _, lab = _labels(probe, x, [m * unit_field])
        curve.append((float(m), float((lab[0] == t).mean())))
        if curve[-1][1] >= level:
            break
    return log_crossing([m for m, _ in curve], [r for _, r in curve], level), curve


def screen_directions(probe: Probe, x: np.ndarray, n: int, grid: int, rng: np.random.Generator,
                      mags: tuple[float, ...] = SCREEN_MAGNITUDES) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` random unit directions, each applied at ``mags`` to ``x``: (directions, labels (n, len(mags), len(x)))."""
    h, w = x.shape[2:]
    dirs = [unit(rng.standard_normal((2, grid, grid))) for _ in range(n)]
    fields = [m * displacement(d, h, w) for d in dirs for m in mags]
    _, lab = _labels(probe, x, fields)
    return dirs, lab.reshape(n, len(mags), len(x))


@dataclass
class _ClassSearch:
    probe: Probe
    t: int
    pool: np.ndarray  # other-class samples for the NES mini-batches
    confirm: np.ndarray  # other-class samples for the measure
    theta: np.ndarray
    level: float
    max_queries: int
    rng: np.random.Generator

    def loss(self, scores: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
        """Per field: mean loss over the mini-batch (lower: closer to ``t``)."""
        if scores is not None:
            n, b, k = scores.shape
            return cross_entropy(scores.reshape(n * b, k), np.full(n * b, self.t)).reshape(n, b).mean(axis=1)
        return (labels != self.t).mean(axis=1).astype(np.float64)

    def run(self) -> tuple[WarpTrigger | None, float, float, list[tuple[float, float]]]:
        h, w = self.pool.shape[2:]
        q0 = self.probe.used
        m = START_MAGNITUDE
        theta = self.theta
        sigma = SIGMA * (1.5 if self.probe.labels_only else 1.0)
        best_ok: tuple[float, np.ndarray] | None = None  # smallest magnitude at which a direction worked on a mini-batch
        measure_cost = 2 * len(MAGNITUDES) * len(self.confirm)
        step_cost = (2 * PAIRS + 1) * min(BATCH, len(self.pool))
        while self.probe.used - q0 + step_cost + measure_cost <= self.max_queries:
            xb = self.pool[self.rng.choice(len(self.pool), size=min(BATCH, len(self.pool)), replace=False)]
            eps = self.rng.standard_normal((PAIRS, *theta.shape))
            cand = [theta] + [unit(theta + s * sigma * e) for e in eps for s in (1.0, -1.0)]
            scores, lab = _labels(self.probe, xb, [m * displacement(d, h, w) for d in cand])
            lo = self.loss(scores, lab)
            rate = float((lab[0] == self.t).mean())
            diff = (lo[1::2] - lo[2::2])[:, None, None, None]
            g = (diff * eps).mean(axis=0)
            gn = float(np.linalg.norm(g))
            if gn > 0:
                theta = unit(theta - LR * g / gn)
            if rate >= ADAPT_LEVEL * self.level:
                if best_ok is None or m < best_ok[0]:
                    best_ok = (m, cand[0])
                m = max(MAGNITUDES[0], m * 0.85)
            else:
                m = min(MAGNITUDES[-1], m * 1.2)
        # measure the final direction and the best-working one along the ladder
        best: tuple[float, np.ndarray, list[tuple[float, float]]] | None = None
        curves: list[tuple[float, float]] = []
        for d in [theta] + ([best_ok[1]] if best_ok is not None else []):
            left = self.max_queries - (self.probe.used - q0)
            size, curve = ladder(self.probe, self.confirm, self.t, displacement(d, h, w), self.level, cap=left)
            curves += curve
            if np.isfinite(size) and (best is None or size < best[0]):
                best = (size, d, curve)
        if best is None:
            return None, float("nan"), 0.0, curves
        size, d, curve = best
        rate_at = max(r for mm, r in curve if mm >= size) if any(mm >= size for mm, _ in curve) else curve[-1][1]
        return WarpTrigger(d, float(size), (h, w)), float(size), float(rate_at), curves


def warp_sweep(
    probe: Probe, screen: tuple[np.ndarray, np.ndarray], search: tuple[np.ndarray, np.ndarray], n_classes: int,
    *, level: float, max_queries_per_class: int, seed: int, classes: list[int] | None = None, grid: int = GRID,
) -> WarpResult:
    """The smallest warping trigger towards each class in ``classes`` (all by default); see the module doc.
    ``screen``: a few samples per class for the shared warm-start screen; ``search``: the samples whose other-class
    part feeds each class's NES mini-batches and confirmation."""
    xs, ys = screen
    xa, ya = search
    res = WarpResult(magnitude=np.full(n_classes, np.nan), rate=np.zeros(n_classes))
    q0 = probe.used
    rng = np.random.default_rng([seed, 91])
    todo = classes if classes is not None else list(range(n_classes))
    try:
        dirs, lab = screen_directions(probe, xs, DICTIONARY, grid, rng)
        for t in todo:
            other = ya != t
            if not other.any():
                continue
            so = ys != t
            # warm start: the dictionary direction that sends most screen samples to t (larger magnitude breaks ties)
            r = (lab[:, :, so] == t).mean(axis=2) if so.any() else np.zeros(lab.shape[:2])
            k = int(np.lexsort((r[:, -1], r[:, 0]))[-1])
            crng = np.random.default_rng([seed, 92, t])
            pool = xa[other]
            perm = crng.permutation(len(pool))
            confirm = pool[perm[:CONFIRM]]
            batch_pool = pool[perm[CONFIRM:]] if len(pool) >= CONFIRM + BATCH else pool
            qc = probe.used
            cs = _ClassSearch(probe, t, batch_pool, confirm, dirs[k], level, max_queries_per_class, crng)
            trig, size, rate, curve = cs.run()
            res.curves[t] = curve
            res.queries_per_class[t] = probe.used - qc
            if trig is not None:
                res.magnitude[t], res.rate[t], res.triggers[t] = size, rate, trig
        res.complete = True
    except OutOfBudget as exc:
        probe.stopped("warp search", exc.reason)
    res.queries = probe.used - q0
    return res

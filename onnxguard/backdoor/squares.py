"""Decision-based square-patch sweep: the smallest square patch that flips samples to each class.

The zeroth-order mask search (:mod:`.zo`) needs a loss with a slope; with labels
only, its 0/1 loss is flat away from the decision boundary, and its sizes for
clean classes come out noisy. This sweep asks a discrete question that only
needs labels and is answered the same way for every class:

    what is the smallest area ``s * s`` of a square patch (any position on a
    grid, any pattern from a small set) that sends at least ``level`` of the
    clean samples of other classes to class ``t``?

Patterns: white, black and two checkerboards (BadNets-style triggers), and the
crop of class ``t``'s mean image (so that every class is reachable at some size:
the full-size crop is the class mean itself). Patch sizes follow a ladder
(2, 3, 4, 6, 8, 11, whole input on a 16 x 16 input; 2 and 3 are rungs on any input up to 64 x 64); the area at which the best flip rate crosses
``level`` is interpolated between rungs, so sizes are continuous.

Flip rates are estimated in two rounds (successive halving): every candidate on
a screening set of one sample per class, then the best few per class and size
on a confirmation set of several samples per class. One stamped batch serves
every candidate target class at once.

Planted triggers whose pattern is not in the set (a random binary block) are
reached by a pattern refinement at the largest pre-screen patch size: for each
class, the grid positions are ranked and the best are refined bit by bit. With
scores the objective is the mean cross-entropy towards ``t``; with labels only it is a
smoothed flip rate: the samples are also blended towards ``t``'s mean at a few
strengths chosen so that the blend alone flips some but not all of them, which
puts them near the decision boundary where a pattern bit that pushes towards
``t`` changes labels (the decision-based idea of HopSkipJump, Chen et al. 2020).

The statistic is computed on log areas (see :mod:`.anomaly`): a trigger size is a
scale quantity and clean classes' areas spread multiplicatively.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .probe import OutOfBudget, Probe
from .triggers import batch_rows, box_trigger, stamp, stamp_box

LADDER_FRACTIONS = (0.125, 0.1875, 0.25, 0.375, 0.5, 0.6875, 1.0)  # of the shorter side: 2,3,4,6,8,11,16 at 16
SCREEN_KEEP = 3  # candidates per (class, size) that go on to the confirmation set
SCREEN_MIN = 0.5  # screening flip rate needed to be confirmed


SMALLEST = (2, 3)  # absolute rungs on inputs up to SMALL_INPUT: a BadNets patch is 3 x 3 on 32 x 32 as on 16 x 16
SMALL_INPUT = 64  # beyond this (ImageNet-size inputs) planted patches scale with the image and each rung is costly


def ladder(h: int, w: int, small_rungs: bool = True) -> list[int]:
    """Patch sides: fractions of the shorter side, plus (``small_rungs``) the :data:`SMALLEST` sides on inputs up
    to :data:`SMALL_INPUT` (without them the smallest rung of a 32 x 32 input is 4 x 4, where a planted 3 x 3 patch
    flips at once and measures the floor area). They are the sweep's costliest rungs (every class is still
    open there: ~60k queries on a 10-class 3x32x32 model), so small budgets go without them."""
    s = min(h, w)
    small = {v for v in SMALLEST if v <= s} if s <= SMALL_INPUT and small_rungs else set()
    return sorted({max(2, min(s, round(f * s))) for f in LADDER_FRACTIONS} | small | {s})


def positions(h: int, w: int, s: int) -> list[tuple[int, int]]:
    """A 7 x 7 grid: flush and one pixel in from each edge, the quarters and the middle."""
    def axis(n: int) -> list[int]:
        return sorted(v for v in {0, 1, (n - s) // 4, (n - s) // 2, 3 * (n - s) // 4, n - s - 1, n - s} if 0 <= v <= n - s)
    return [(r, c) for r in axis(h) for c in axis(w)]


def _blocks(s: int) -> dict[str, np.ndarray]:
    ii, jj = np.indices((s, s))
    return {"white": np.ones((s, s)), "black": np.zeros((s, s)),
            "checker": ((ii + jj) % 2 == 0).astype(float), "checker-inv": ((ii + jj) % 2 == 1).astype(float)}


@dataclass
class SquareResult:
    area: np.ndarray  # (K,) interpolated minimal area reaching the level; nan when not measured
    rate: np.ndarray  # (K,) confirmed flip rate of the trigger kept
    triggers: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    curve: dict[int, list[tuple[int, float]]] = field(default_factory=dict)  # per class: (area, best confirmed rate)
    queries: int = 0
    refined: int = 0


def _hits(labels: np.ndarray, ys: np.ndarray, t: int) -> float:
    other = ys != t
    return float((labels[other] == t).mean()) if other.any() else 0.0


def square_sweep(
    probe: Probe, screen: tuple[np.ndarray, np.ndarray], confirm: tuple[np.ndarray, np.ndarray], n_classes: int,
    class_means: np.ndarray, *, level: float, refine_size: int, refine_samples: tuple[np.ndarray, np.ndarray],
    refine_positions: int = 2, rng: np.random.Generator, classes: list[int] | None = None,
    refine_max_queries: int | None = None, small_rungs: bool = True,
) -> SquareResult:
    xs, ys = screen
    xc, yc = confirm
    c, h, w = xs.shape[1:]
    q0 = probe.used
    res = SquareResult(area=np.full(n_classes, np.nan), rate=np.zeros(n_classes))
    best: dict[tuple[int, int], tuple[float, np.ndarray, np.ndarray]] = {}  # (class, size) -> confirmed rate, mask, pattern
    done = np.zeros(n_classes, dtype=bool)
    present = np.array([(ys == t).any() or (yc == t).any() for t in range(n_classes)])
    if classes is not None:  # only these classes get the sweep (many classes: the pre-screen's choice)
        present &= np.isin(np.arange(n_classes), classes)
    sizes = ladder(h, w, small_rungs)
    try:
        refined = _refine_all(probe, *refine_samples, n_classes, class_means, refine_size, refine_positions, rng,
                              classes=[t for t in range(n_classes) if present[t]], max_queries=refine_max_queries)
        res.refined = len(refined)
        for t, (m, p) in refined.items():
            _, lab = probe.run(stamp(xc, m, p))
            best[(t, refine_size)] = (_hits(lab, yc, t), m, p)
        for s in sizes:
            todo = [t for t in range(n_classes) if present[t] and not done[t]]
            if not todo:
                break
            # candidates as boxes (row, col, block, class it is for or None: all); full-size masks only for the kept ones
            cands: list[tuple[int, int, np.ndarray, int | None]] = []
            blocks = _blocks(s)
            for r, cc in positions(h, w, s):
                for blk in blocks.values():
                    cands.append((r, cc, blk, None))
                for t in todo:
                    cands.append((r, cc, class_means[t][:, r : r + s, cc : cc + s], t))
            lab = _run_chunked(probe, xs, [(r, cc, blk) for r, cc, blk, _ in cands])
            for t in todo:
                rates = np.array([_hits(lab[k], ys, t) if k_t in (None, t) else -1.0 for k, (_, _, _, k_t) in enumerate(cands)])
                top = [int(k) for k in np.argsort(-rates, kind="stable")[:SCREEN_KEEP] if rates[k] >= SCREEN_MIN]
                prev = best.get((t, s))
                for k in top:
                    m, p = box_trigger((c, h, w), *cands[k][:3])
                    _, lc = probe.run(stamp_box(xc, *cands[k][:3]))
                    r_c = _hits(lc, yc, t)
                    if prev is None or r_c > prev[0]:
                        prev = (r_c, m, p)
                if prev is None:
                    k = int(np.argmax(rates))
                    prev = (max(float(rates[k]), 0.0) * 0.5, *box_trigger((c, h, w), *cands[k][:3]))  # screening only: discounted
                best[(t, s)] = prev
                if prev[0] >= level:
                    done[t] = True
    except OutOfBudget as exc:
        probe.stopped("square sweep", exc.reason)
    for t in range(n_classes):
        prev_a, prev_r = 0.0, 0.0
        curve = []
        for s in sizes:
            if (t, s) not in best:
                continue
            r, m, p = best[(t, s)]
            curve.append((s * s, round(float(r), 4)))
            if r >= level:
                res.area[t] = prev_a + (s * s - prev_a) * (level - prev_r) / max(r - prev_r, 1e-9)
                res.rate[t] = r
                res.triggers[t] = (m, p)
                break
            if r >= prev_r:
                prev_a, prev_r = s * s, r
        res.curve[t] = curve
    res.queries = probe.used - q0
    return res


def _run_chunked(probe: Probe, xs: np.ndarray, cands: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """Labels of every box candidate stamped on every sample; batches bounded in memory (:func:`batch_rows`)."""
    out = []
    chunk = max(1, batch_rows(xs[0].size) // len(xs))
    for i in range(0, len(cands), chunk):
        part = cands[i : i + chunk]
        _, lab = probe.run(np.concatenate([stamp_box(xs, *cd) for cd in part]))
        out.append(lab.reshape(len(part), len(xs)))
    return np.concatenate(out)


# -- pattern refinement -----------------------------------------------------------


def _blend_levels(probe: Probe, x: np.ndarray, t: int, mean_t: np.ndarray) -> list[float]:
    """Blend strengths towards the target mean at which the blend alone flips some but not all samples."""
    grid = np.linspace(0.1, 0.9, 9)
    _, lab = probe.run(np.concatenate([(1 - b) * x + b * mean_t for b in grid]))
    rates = (lab.reshape(len(grid), len(x)) == t).mean(axis=1)
    inside = [float(b) for b, r in zip(grid, rates) if 0.05 <= r <= 0.6]
    if not inside:
        inside = [float(grid[int(np.argmin(np.abs(rates - 0.3)))])]
    return inside[-2:]


class _Objective:
    """Lower is better: minus a smoothed flip rate towards ``t`` over the samples and their blends
    (cross-entropy on scores got stuck on random-pattern triggers). Triggers are boxes ``(row, col, block)``;
    batches are bounded in memory."""

    def __init__(self, probe: Probe, x: np.ndarray, t: int, mean_t: np.ndarray) -> None:
        self.probe, self.t = probe, t
        self.base = np.concatenate([x] + [(1 - b) * x + b * mean_t for b in _blend_levels(probe, x, t, mean_t)])

    def __call__(self, triggers: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
        lab = _run_chunked(self.probe, self.base, triggers)
        return -(lab == self.t).mean(axis=1)


REFINE_CELLS = 8  # the refined pattern has at most 8 x 8 cells: bounded cost per class at any input size


def _refine_all(probe: Probe, x: np.ndarray, y: np.ndarray, n_classes: int, means: np.ndarray, s: int, k_pos: int,
                rng: np.random.Generator, classes: list[int] | None = None,
                max_queries: int | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Refined patterns per class. ``max_queries``: the refinement's cap, split evenly over the classes (the
    bit search stops before a pass that would exceed its class's share; the positions' screening always runs)."""
    c, h, w = x.shape[1:]
    out = {}
    pos = positions(h, w, s)
    todo = list(classes if classes is not None else range(n_classes))
    per_class = None if max_queries is None else max_queries // max(1, len(todo))
    for t in todo:
        xo = x[y != t]
        if len(xo) == 0:
            continue
        q0 = probe.used
        obj = _Objective(probe, xo, t, means[t])
        starts = [(r, cc, np.ones((c, s, s))) for r, cc in pos]
        f = obj(starts)
        order = np.argsort(f, kind="stable")
        best_f, best_t = np.inf, None
        for k in order[:k_pos]:
            r, cc, blk = starts[k]
            cap = None if per_class is None else per_class - (probe.used - q0)
            fk, pk = _bit_search(obj, r, cc, blk, float(f[k]), rng, max_queries=cap)
            if fk < best_f:
                best_f, best_t = fk, box_trigger((c, h, w), r, cc, pk)
        if best_t is not None:
            out[t] = best_t
    return out


def _bit_search(obj: _Objective, r: int, cc: int, blk: np.ndarray, f0: float, rng: np.random.Generator, passes: int = 2,
                max_queries: int | None = None):
    """Coordinate search over the patch's cells (each at 0 or 1, all channels together; at most
    :data:`REFINE_CELLS` squared cells, one pixel each on small patches): all single flips are scored in one
    batch per pass and the improving ones applied, best first, re-checked. A pass that would spend more than
    ``max_queries`` in all is not started."""
    s = blk.shape[-1]
    cell = max(1, -(-s // REFINE_CELLS))
    edges = list(range(0, s, cell))
    idx = [(i, j) for i in edges for j in edges]
    p = blk.copy()

    def flip(q: np.ndarray, i: int, j: int) -> None:
        q[:, i : i + cell, j : j + cell] = 1.0 - q[:, i : i + cell, j : j + cell]

    spent = 0
    for _ in range(passes):
        cost = (len(idx) + 1) * len(obj.base)  # the single flips and the combined one
        if max_queries is not None and spent + cost > max_queries:
            break
        spent += cost
        trials = []
        for i, j in idx:
            q = p.copy()
            flip(q, i, j)
            trials.append((r, cc, q))
        f = obj(trials)
        improving = [int(k) for k in np.argsort(f, kind="stable") if f[k] < f0]
        if not improving:
            break
        q = p.copy()
        for k in improving:
            flip(q, *idx[k])
        fq = obj([(r, cc, q)])[0]
        if fq <= f[improving[0]]:
            p, f0 = q, float(fq)
        else:
            flip(p, *idx[improving[0]])
            f0 = float(f[improving[0]])
    return f0, p

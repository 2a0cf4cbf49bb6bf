"""HopSkipJump (Chen, Jordan & Wainwright, IEEE S&P 2020), L2 and L-infinity, labels only.

A decision-based *minimisation* attack: it finds an adversarial input, then walks
along the decision boundary towards the clean input, and returns the smallest
perturbation it found. Success at ``epsilon`` means that perturbation is
``<= epsilon``; one run therefore answers every epsilon of a list at once.

Each iteration ``t`` (as in the paper and its reference code):

1. binary search between the clean input and the current adversarial input to
   the boundary (L2: along the segment; L-infinity: by clipping to a shrinking
   box), down to the threshold ``theta`` (``gamma / d^1.5`` for L2,
   ``gamma / d^2`` for L-infinity);
2. estimate the gradient direction at the boundary point from
   ``min(100 sqrt(t), 10000)`` random probes at radius ``delta`` (``0.1`` of
   the range at ``t = 1``, then ``sqrt(d) theta dist`` for L2 and
   ``d theta dist`` for L-infinity), with the paper's baseline subtraction;
3. geometric step-size search: step ``dist / sqrt(t)`` along the estimate
   (its sign for L-infinity), halved until the step lands on an adversarial input.

All still-active samples advance in lock step, so every phase is one batched
oracle call per round. Only labels are used. The per-sample budget is planned:
each phase takes at most what is left, and a sample always holds a verified
adversarial input, so running out of queries only stops its progress.

Starting points: the closest adversarial input among ``starts`` (a pool of
inputs with their known labels, e.g. the other scan samples; one verification
query each), else uniform random noise (``init_tries`` queries at most), then a
binary search towards the clean input. A targeted attack needs a starting point
of the target class: without a pool it relies on random noise, which rarely
lands in a given class.
"""

from __future__ import annotations

import math

import numpy as np

from ..oracle import Oracle
from .base import AttackResult, Meter, Progress, check_norm, is_success

MEM_ELEMENTS = 1 << 23  # cap on (probes x features) held at once in the gradient estimate


def _dist(a: np.ndarray, b: np.ndarray, norm: str) -> np.ndarray:
    d = a - b
    return np.abs(d).max(axis=1) if norm == "linf" else np.sqrt((d * d).sum(axis=1))


def _project(x0: np.ndarray, adv: np.ndarray, alpha: np.ndarray, norm: str) -> np.ndarray:
    """The point at 'fraction' alpha between x0 and adv (L2), or adv clipped to the alpha-box around x0 (Linf)."""
    a = alpha[:, None]
    if norm == "l2":
        return (1.0 - a) * x0 + a * adv
    return np.clip(adv, x0 - a, x0 + a)


def hopskipjump(
    oracle: Oracle,
    z: np.ndarray,
    y: np.ndarray,
    *,
    norm: str = "l2",
    epsilon: float | None = None,
    budget: int,
    rng: np.random.Generator,
    target: np.ndarray | None = None,
    progress: Progress | None = None,
    starts: tuple[np.ndarray, np.ndarray] | None = None,
    gamma: float = 1.0,
    init_evals: int = 100,
    max_evals: int = 10_000,
    max_iter: int = 10_000,
    init_tries: int = 100,
    stop_at_epsilon: bool = False,
) -> AttackResult:
    """Run HopSkipJump on normalised samples ``z`` with reference labels ``y``.

    ``budget`` is the number of model queries per sample. ``starts`` is an optional
    pool ``(z_pool, labels_pool)`` of inputs whose labels are known. With
    ``stop_at_epsilon`` a sample stops once its perturbation is ``<= epsilon``
    (a fixed-epsilon run); by default it keeps minimising until its budget is spent."""
    norm = check_norm(norm, ("l2", "linf"))
    meter = Meter(oracle, "hopskipjump", norm, epsilon, target)
    shape = oracle.sample_shape
    n = z.shape[0]
    d = int(np.prod(shape))
    x0 = np.asarray(z, dtype=np.float64).reshape(n, d)
    y = np.asarray(y)
    budget = oracle.allowance(budget)
    theta = gamma / (d**1.5) if norm == "l2" else gamma / (d**2)

    adv = x0.copy()
    found = np.zeros(n, dtype=bool)
    dist = np.full(n, np.inf)
    best = x0.copy()
    best_dist = np.full(n, np.inf)
    info = {"iterations": 0, "init": "none"}

    def used() -> np.ndarray:
        return meter.queries()

    def left() -> np.ndarray:
        return np.maximum(budget - used(), 0)

    def decide(points: np.ndarray, owners: np.ndarray) -> np.ndarray:
        if len(owners) == 0:
            return np.zeros(0, dtype=bool)
        labels = oracle.labels(points.reshape(len(owners), *shape), owners)
        return is_success(labels, y[owners], None if target is None else target[owners])

    def record(sel: np.ndarray) -> None:
        dist[sel] = _dist(adv[sel], x0[sel], norm)
        better = dist[sel] < best_dist[sel]
        s = sel[better]
        best[s] = adv[s]
        best_dist[s] = dist[s]

    def result() -> AttackResult:
        pert = np.where(found, best_dist, np.inf)
        ok = np.isfinite(pert) if epsilon is None else pert <= float(epsilon) * (1 + 1e-9) + 1e-12
        z_adv = np.where(found[:, None], best, x0).reshape(n, *shape)
        extra = {"min_perturbation": pert, "minimisation": True, **info}
        return meter.result(z_adv, ok, np.where(found, best_dist, np.nan), budget, extra)

    if n == 0 or budget <= 0:
        return result()

    # -- starting points ------------------------------------------------------------
    if starts is not None:
        pool = np.asarray(starts[0], dtype=np.float64).reshape(len(starts[0]), d)
        plab = np.asarray(starts[1])
        cand = np.full(n, -1)
        for i in range(n):
            ok = plab != y[i] if target is None else plab == target[i]
            if ok.any():
                j = np.flatnonzero(ok)
                cand[i] = j[np.argmin(_dist(pool[j], x0[i][None, :], norm))]
        sel = np.flatnonzero(cand >= 0)
        if sel.size:
            hit = decide(pool[cand[sel]], sel)
            s = sel[hit]
            adv[s] = pool[cand[s]]
            found[s] = True
            info["init"] = "pool"
    for _ in range(init_tries):
        todo = np.flatnonzero(~found & (left() > 0))
        if todo.size == 0:
            break
        noise = rng.uniform(0.0, 1.0, size=(todo.size, d))
        hit = decide(noise, todo)
        adv[todo[hit]] = noise[hit]
        found[todo[hit]] = True
        if info["init"] == "none" and hit.any():
            info["init"] = "random"
    # blend towards the clean input (the paper's initial binary search, along the segment)
    act = np.flatnonzero(found)
    lo = np.zeros(n)
    hi = np.ones(n)
    while act.size:
        act = act[((hi[act] - lo[act]) > 1e-3) & (left()[act] > 0)]
        if act.size == 0:
            break
        mid = (lo[act] + hi[act]) / 2
        pts = (1 - mid[:, None]) * x0[act] + mid[:, None] * adv[act]
        ok = decide(pts, act)
        hi[act[ok]] = mid[ok]
        lo[act[~ok]] = mid[~ok]
    act = np.flatnonzero(found)
    adv[act] = (1 - hi[act, None]) * x0[act] + hi[act, None] * adv[act]
    record(act)

    # -- main loop ------------------------------------------------------------------------
    def boundary_search(act: np.ndarray) -> None:
        """Binary search from adv[act] towards x0 down to the threshold; keeps the adversarial end."""
        if norm == "l2":
            hi = np.ones(act.size)
            thr = np.full(act.size, theta)
        else:
            hi = dist[act].copy()
            thr = np.minimum(dist[act] * theta, theta)
        lo = np.zeros(act.size)
        live = np.arange(act.size)
        while True:
            live = live[((hi[live] - lo[live]) > thr[live]) & (left()[act[live]] > 0)]
            if live.size == 0:
                break
            mid = (hi[live] + lo[live]) / 2
            ok = decide(_project(x0[act[live]], adv[act[live]], mid, norm), act[live])
            hi[live[ok]] = mid[ok]
            lo[live[~ok]] = mid[~ok]
        adv[act] = _project(x0[act], adv[act], hi, norm)
        record(act)

    def bs_cost(act: np.ndarray) -> np.ndarray:
        width = np.ones(act.size) if norm == "l2" else np.maximum(dist[act], 1e-12)
        thr = np.full(act.size, theta) if norm == "l2" else np.minimum(dist[act] * theta, theta)
        return np.ceil(np.log2(np.maximum(width / thr, 2.0))).astype(np.int64)

    act = np.flatnonzero(found & (left() > 0))
    if act.size:
        boundary_search(act)
    total = budget
    for t in range(1, max_iter + 1):
        active = found & (left() > 0)
        if stop_at_epsilon and epsilon is not None:
            active &= best_dist > float(epsilon)
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        info["iterations"] = t
        # delta: probe radius of the gradient estimate
        if t == 1:
            delta = np.full(act.size, 0.1)
        elif norm == "l2":
            delta = np.sqrt(d) * theta * dist[act]
        else:
            delta = d * theta * dist[act]
        delta = np.maximum(delta, 1e-10)
        # queries: gradient probes, leaving room for the step search and the boundary search
        reserve = bs_cost(act) + 2
        want = int(min(init_evals * math.sqrt(t), max_evals))
        evals = np.minimum(want, left()[act] - reserve)
        keep = evals >= 2
        if not keep.any():
            # too few queries left for an estimate: a last boundary refinement with what is left
            break
        act, delta, evals = act[keep], delta[keep], evals[keep]
        grad = np.zeros((act.size, d))
        # chunk samples so that probes x features stays within memory
        order = np.arange(act.size)
        start = 0
        while start < act.size:
            stop = start
            tot = 0
            while stop < act.size and (stop == start or tot + evals[stop] * d <= MEM_ELEMENTS):
                tot += evals[stop] * d
                stop += 1
            part = order[start:stop]
            ev = evals[part]
            owners_local = np.repeat(part, ev)
            m = owners_local.size
            # float32 probes: the model sees float32 anyway, and this halves the cost of the estimate
            if norm == "l2":
                rv = rng.standard_normal((m, d), dtype=np.float32)
            else:
                rv = rng.random((m, d), dtype=np.float32) * 2.0 - 1.0
            base = adv[act[part]].astype(np.float32)
            dl = delta[part].astype(np.float32)
            # probe = base + delta * rv / |rv|, built in place (one m x d buffer)
            rv *= (np.repeat(dl, ev) / np.maximum(np.sqrt(np.einsum("ij,ij->i", rv, rv)), 1e-12))[:, None]
            equal = bool((ev == ev[0]).all())
            if equal:  # the usual case: every sample takes the same number of probes
                rv.reshape(part.size, int(ev[0]), d)[...] += base[:, None, :]
            else:
                rv += np.repeat(base, ev, axis=0)
            probe = np.clip(rv, 0.0, 1.0, out=rv)
            ok = decide(probe, act[owners_local])
            fval = np.where(ok, 1.0, -1.0).astype(np.float32)
            seg = np.concatenate([[0], np.cumsum(ev)[:-1]])
            mean_f = np.add.reduceat(fval, seg) / ev
            all_same = np.abs(mean_f) == 1.0
            fc = fval - np.repeat(np.where(all_same, 0.0, mean_f), ev).astype(np.float32)
            # sum of fc * (probe - base) / delta, per sample: the clipped direction, as in the reference code
            if equal:  # a batched matrix product per sample (BLAS) instead of a segmented sum over m x d
                e = int(ev[0])
                g = np.matmul(fc.reshape(part.size, 1, e), probe.reshape(part.size, e, d))[:, 0, :]
            else:
                g = np.add.reduceat(fc[:, None] * probe, seg, axis=0)
            g = g - np.add.reduceat(fc, seg)[:, None] * base
            g = g.astype(np.float64) / (dl.astype(np.float64)[:, None] * ev[:, None])
            grad[part] = g
            start = stop
        gn = np.sqrt((grad * grad).sum(axis=1, keepdims=True))
        grad = grad / np.maximum(gn, 1e-12)
        update = grad if norm == "l2" else np.sign(grad)
        # geometric step-size search from the boundary point
        step = dist[act] / math.sqrt(t)
        moved = np.zeros(act.size, dtype=bool)
        live = np.arange(act.size)
        for _ in range(60):
            live = live[~moved[live] & (left()[act[live]] > bs_cost(act[live]))]
            if live.size == 0:
                break
            cand = np.clip(adv[act[live]] + step[live, None] * update[live], 0.0, 1.0)
            ok = decide(cand, act[live])
            adv[act[live[ok]]] = cand[ok]
            moved[live[ok]] = True
            step[live[~ok]] /= 2.0
        mv = act[moved]
        if mv.size:
            dist[mv] = _dist(adv[mv], x0[mv], norm)
            boundary_search(mv)
        if progress:
            progress(int(min(used()[found].mean() if found.any() else total, total)), total)
    if progress:
        progress(total, total)
    return result()

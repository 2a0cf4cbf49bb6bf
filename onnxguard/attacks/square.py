"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), L-infinity and L2.

Score-based random search: each iteration changes one random square window
per still-unbroken sample and keeps the change when the margin loss drops.
One model query per iteration per unbroken sample, all samples in one
batched oracle call. Follows the paper's square-size schedule
(``p_selection``), vertical-stripe initialisation for L-infinity and the
pseudo-Gaussian "meta" perturbations with two windows for L2.

Windows are drawn per sample (the reference code shares one position across
the batch). Tabular inputs are seen as a 1 x F strip, where a "square" is a
run of ``p * F`` consecutive features.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..oracle import Oracle
from .base import (
    AttackResult,
    Meter,
    Progress,
    check_norm,
    from_chw,
    image_view_shape,
    is_success,
    margin,
    perturbation_norm,
    to_chw,
    work_chunk,
)


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """The paper's piecewise-constant schedule of the fraction of features changed per step."""
    i = int(it / max(n_iters, 1) * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256), (10000, 512)):
        if i <= bound:
            return p_init / div
    return p_init / 512


LOW_BUDGET = 2000  # queries per sample at or below which L-infinity starts from larger windows on large inputs too


def default_p_init(norm: str, pixels: int, budget: int | None = None) -> float:
    """Initial fraction of the input changed per step. The paper's 0.05 (L-inf) / 0.1 (L2) are tuned for
    ImageNet-sized inputs at 10,000 queries; on small inputs (<= 32x32, tabular) larger windows find adversarials
    in far fewer queries (measured on the example CNN at a 1000-query budget: success 60% -> 65% and median queries
    440 -> 59 for L-inf at p 0.05 -> 0.3; see benchmarks/square_vs_art.py --p-init). At low budgets
    (<= ``LOW_BUDGET`` queries per sample) the same holds for L-inf on large inputs: on the trained 224x224
    document-orientation classifier of benchmarks/wheel_models.py (29 correctly classified samples, eps 8/255,
    300 queries) success went 9 -> 19 of 29 at p 0.05 -> 0.3 (ART's SquareAttack at its default 0.8: 11)."""
    if pixels <= 32 * 32:
        return 0.3 if norm == "linf" else 0.5
    if norm == "linf" and budget is not None and budget <= LOW_BUDGET:
        return 0.3
    return 0.05 if norm == "linf" else 0.1


def _window(p: float, h: int, w: int) -> tuple[int, int]:
    if h == 1:
        return 1, int(min(w, max(1, round(p * w))))
    s = int(max(1, round(np.sqrt(p * h * w))))
    return min(s, h), min(s, w)


def _corners(rng: np.random.Generator, n: int, h: int, w: int, sh: int, sw: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, h - sh + 1, size=n), rng.integers(0, w - sw + 1, size=n)


def _window_index(h0: np.ndarray, w0: np.ndarray, sh: int, sw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advanced indices (ii, rr, cc) so that ``a[ii, :, rr, cc]`` is each sample's window, (n, sh, sw, C)."""
    n = h0.shape[0]
    ii = np.arange(n)[:, None, None]
    rr = (h0[:, None] + np.arange(sh)[None, :])[:, :, None]
    cc = (w0[:, None] + np.arange(sw)[None, :])[:, None, :]
    return ii, rr, cc


def _pseudo_gaussian(a: int, b: int) -> np.ndarray:
    """Concentric rectangles with weights 1/(k+1)^2, unit L2 norm (the paper's bump)."""
    d = np.zeros((a, b))
    if a == 0 or b == 0:
        return d
    ca, cb = a // 2, b // 2
    for k in range(max(ca, cb) + 1):
        d[max(ca - k, 0) : min(ca + k + 1, a), max(cb - k, 0) : min(cb + k + 1, b)] += 1.0 / (k + 1) ** 2
    return d / np.sqrt((d**2).sum())


@lru_cache(maxsize=256)
def _meta_base(sh: int, sw: int) -> np.ndarray:
    """Two bumps of opposite sign side by side (split along the longer side), unit norm; cached, read-only."""
    d = np.zeros((sh, sw))
    if sh * sw == 1:
        d[:] = 1.0
        d.flags.writeable = False
        return d
    if sh >= sw:
        d[: sh // 2] = _pseudo_gaussian(sh // 2, sw)
        d[sh // 2 :] = -_pseudo_gaussian(sh - sh // 2, sw)
    else:
        d[:, : sw // 2] = _pseudo_gaussian(sh, sw // 2)
        d[:, sw // 2 :] = -_pseudo_gaussian(sh, sw - sw // 2)
    d = d / np.sqrt((d**2).sum())
    d.flags.writeable = False
    return d


def _meta_draw(sh: int, sw: int, rng: np.random.Generator) -> tuple[bool, float]:
    """The paper's random transpose (square windows) and sign of the meta perturbation."""
    if sh * sw == 1:
        return False, 1.0
    transposed = bool(sh == sw and rng.random() > 0.5)
    return transposed, (-1.0 if rng.random() > 0.5 else 1.0)


def _meta_pseudo_gaussian(sh: int, sw: int, rng: np.random.Generator) -> np.ndarray:
    transposed, sign = _meta_draw(sh, sw, rng)
    d = _meta_base(sh, sw)
    return sign * (d.T if transposed else d)


def _l2(a: np.ndarray, axes: tuple[int, ...], keepdims: bool = True) -> np.ndarray:
    return np.sqrt((a**2).sum(axis=axes, keepdims=keepdims))


def _l2_init(n: int, c: int, h: int, w: int, eps: float, rng: np.random.Generator) -> np.ndarray:
    """Tiles of pseudo-Gaussian bumps with random signs, scaled to norm eps."""
    delta = np.zeros((n, c, h, w))
    s = max(h // 5, 1) if h > 1 else max(w // 5, 1)
    sh, sw = (s, s) if h > 1 else (1, s)
    bump = _meta_pseudo_gaussian(sh, sw, rng) if sh * sw > 1 else np.ones((1, 1))
    for r in range(0, h - sh + 1, sh):
        for col in range(0, w - sw + 1, sw):
            delta[:, :, r : r + sh, col : col + sw] += bump[None, None] * rng.choice([-1.0, 1.0], size=(n, c, 1, 1))
    nrm = _l2(delta, (1, 2, 3))
    return delta / np.maximum(nrm, 1e-12) * eps


REDRAWS = 10  # redraws of a proposal that leaves the input unchanged before the sample sits the step out


def _proposal(
    norm: str, xa: np.ndarray, xb: np.ndarray, p: float, eps: float, rng: np.random.Generator, c: int, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """One Square step's candidates for samples ``xa`` (clean) with current best ``xb``, and which differ from ``xb``.

    As in the reference code, a window whose update leaves the input unchanged (its pixels already sit at
    the drawn corner of the eps-box) is redrawn, signs first, then its position; a sample whose candidate is
    still unchanged after ``REDRAWS`` tries is not queried this step. Memory: O(n C H W), no tables."""
    n = xa.shape[0]
    sh, sw = _window(p, h, w)
    if norm == "linf":
        x_new = xb.copy()
        todo = np.arange(n)
        changed = np.zeros(n, dtype=bool)
        h0, w0 = _corners(rng, n, h, w, sh, sw)
        for attempt in range(2 * REDRAWS):
            if attempt == REDRAWS:  # signs alone did not help: move the window too
                h0[todo], w0[todo] = _corners(rng, todo.size, h, w, sh, sw)
            ii, rr, cc = _window_index(h0[todo], w0[todo], sh, sw)
            ii = todo[ii]
            signs = ((2.0 * eps) * rng.integers(0, 2, size=(todo.size, 1, 1, c)) - eps).astype(xa.dtype)
            win = np.clip(xa[ii, :, rr, cc] + signs, 0.0, 1.0)  # (t, sh, sw, C)
            diff = np.abs(win - xb[ii, :, rr, cc]).reshape(todo.size, -1).max(axis=1) >= 1e-7
            ok = todo[diff]
            if ok.size:
                x_new[ii[diff], :, rr[diff], cc[diff]] = win[diff]
                changed[ok] = True
            todo = todo[~diff]
            if todo.size == 0:
                break
        return x_new, changed
    if h > 1 and min(h, w) >= 3:
        sh = sw = max(sh, 3)
        if sh % 2 == 0:
            sh = sw = sh + 1 if sh + 1 <= min(h, w) else sh - 1
    h0, w0 = _corners(rng, n, h, w, sh, sw)
    h2, w2 = _corners(rng, n, h, w, sh, sw)
    # everything but the final renormalisation works on the two windows only: (n, sh, sw, C) arrays
    delta = xb - xa
    i1, r1, c1 = _window_index(h0, w0, sh, sw)
    i2, r2, c2 = _window_index(h2, w2, sh, sw)
    win1 = delta[i1, :, r1, c1].astype(np.float64)
    win2 = delta[i2, :, r2, c2].astype(np.float64)
    sq1 = (win1 * win1).sum(axis=(1, 2))  # (n, C)
    inside1 = ((r2 >= h0[:, None, None]) & (r2 < h0[:, None, None] + sh) & (c2 >= w0[:, None, None]) & (c2 < w0[:, None, None] + sw))
    sq12 = sq1 + np.where(inside1[..., None], 0.0, win2 * win2).sum(axis=(1, 2))  # over the union of the windows
    norm_img2 = np.einsum("nchw,nchw->n", delta, delta, dtype=np.float64)  # (n,)
    transposed, sign = _meta_draw(sh, sw, rng)
    base = _meta_base(sh, sw)
    pat = (base.T if transposed else base)[None, :, :, None]
    new = pat * (sign * (2.0 * rng.integers(0, 2, size=(n, 1, 1, c)) - 1.0))
    new = new + win1 / (1e-10 + np.sqrt(sq1)[:, None, None, :])
    target_norm = np.sqrt(np.maximum(eps**2 - norm_img2, 0.0)[:, None] / c + sq12)  # (n, C)
    new *= (target_norm / np.maximum(np.sqrt((new * new).sum(axis=(1, 2))), 1e-12))[:, None, None, :]
    d = delta
    d[i2, :, r2, c2] = 0.0
    d[i1, :, r1, c1] = new.astype(d.dtype)
    d *= (eps / np.maximum(np.sqrt(np.einsum("nchw,nchw->n", d, d, dtype=np.float64)), 1e-12)).astype(d.dtype)[:, None, None, None]
    d += xa
    x_new = np.clip(d, 0.0, 1.0, out=d)
    changed = np.array([not np.array_equal(x_new[i], xb[i]) for i in range(n)], dtype=bool)
    return x_new, changed


def square_attack(
    oracle: Oracle,
    z: np.ndarray,
    y: np.ndarray,
    *,
    norm: str = "linf",
    epsilon: float,
    budget: int,
    rng: np.random.Generator,
    target: np.ndarray | None = None,
    p_init: float | None = None,
    progress: Progress | None = None,
) -> AttackResult:
    """Run Square Attack on normalised samples ``z`` with reference labels ``y``.

    ``budget`` is the number of model queries per sample (the initialisation counts as one)."""
    norm = check_norm(norm, ("linf", "l2"))
    meter = Meter(oracle, "square", norm, epsilon, target)
    shape = oracle.sample_shape
    (c, h, w), _ = image_view_shape(shape, oracle.layout)
    n = z.shape[0]
    idx = np.arange(n)
    # work in the model's own precision: float32 for float32/float16 models (half the memory traffic)
    pdt = np.float64 if oracle.model.input_dtype == np.float64 else np.float32
    x = to_chw(np.asarray(z, dtype=pdt), shape, oracle.layout)
    budget = oracle.allowance(budget)
    if p_init is None:
        p_init = default_p_init(norm, h * w, budget)

    skipped = 0

    def done(x_best: np.ndarray, success: np.ndarray) -> AttackResult:
        z_adv = from_chw(x_best, shape, oracle.layout)
        return meter.result(z_adv, success, perturbation_norm(z_adv - z, norm), budget, {"unchanged_skipped": skipped})

    if budget <= 0 or n == 0:
        return done(x.copy(), np.zeros(n, dtype=bool))

    if epsilon <= 0:
        labels = oracle.labels(from_chw(x, shape, oracle.layout), idx)
        return done(x.copy(), is_success(labels, y, target))

    if norm == "linf":
        x_best = np.clip(x + (epsilon * rng.choice([-1.0, 1.0], size=(n, c, 1, w))).astype(pdt), 0.0, 1.0)
    else:
        x_best = np.clip(x + _l2_init(n, c, h, w, epsilon, rng).astype(pdt), 0.0, 1.0)
    scores, labels = oracle.scores(from_chw(x_best, shape, oracle.layout), idx)
    loss = margin(scores, y, target)
    success = is_success(labels, y, target)
    n_iters = budget - 1
    if progress:
        progress(0, n_iters)

    # compact copies of the still-unbroken samples, refreshed only when some break
    act = np.flatnonzero(~success)
    xa, xb, ya = x[act], x_best[act], y[act]
    ta = None if target is None else target[act]
    la = loss[act]
    # samples per oracle call: the step's temporaries stay within the oracle's working-memory budget
    chunk = work_chunk(oracle, c * h * w * np.dtype(pdt).itemsize, arrays=4)
    # a step that a sample sat out (its proposals left the input unchanged) costs it no query, so the loop
    # runs on (at the schedule's smallest windows) until every sample has spent its budget, up to 2x the steps
    for it in range(2 * n_iters):
        if act.size == 0:
            break
        if it >= n_iters:
            left = budget - meter.queries()[act]
            if not (left > 0).any():
                break
        p = p_selection(p_init, min(it, n_iters - 1), n_iters)
        na = act.size
        done_now = np.zeros(na, dtype=bool)
        for s0 in range(0, na, chunk):
            sl = slice(s0, min(s0 + chunk, na))
            x_new, changed = _proposal(norm, xa[sl], xb[sl], p, epsilon, rng, c, h, w)
            if not changed.all():
                skipped += int((~changed).sum())  # no query on an input identical to the current best
            if it >= n_iters:
                changed &= (budget - meter.queries()[act[sl]]) > 0
            q = np.flatnonzero(changed)
            if q.size == 0:
                continue
            rows = np.arange(sl.start, sl.stop)[q]
            xq = x_new[q] if q.size < x_new.shape[0] else x_new
            s_new, l_new = oracle.scores(from_chw(xq, shape, oracle.layout), act[rows])
            t_q = None if ta is None else ta[rows]
            loss_new = margin(s_new, ya[rows], t_q)
            succ_new = is_success(l_new, ya[rows], t_q)
            accept = (loss_new < la[rows]) | succ_new
            if accept.any():
                r_acc = rows[accept]
                xb[r_acc] = xq[accept]
                la[r_acc] = loss_new[accept]
            done_now[rows[accept & succ_new]] = True
        if done_now.any():
            x_best[act] = xb
            loss[act] = la
            success[act[done_now]] = True
            keep = ~done_now
            act, xa, xb, ya, la = act[keep], xa[keep], xb[keep], ya[keep], la[keep]
            ta = None if ta is None else ta[keep]
        if progress and (it % 25 == 0 or it == n_iters - 1):
            progress(min(it + 1, n_iters), n_iters)
    if act.size:
        x_best[act] = xb
        loss[act] = la
    if progress:
        progress(n_iters, n_iters)
    return done(x_best, success)

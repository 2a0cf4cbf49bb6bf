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
)


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """The paper's piecewise-constant schedule of the fraction of features changed per step."""
    i = int(it / max(n_iters, 1) * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256), (10000, 512)):
        if i <= bound:
            return p_init / div
    return p_init / 512


def default_p_init(norm: str, pixels: int) -> float:
    """Initial fraction of the input changed per step. The paper's 0.05 (L-inf) / 0.1 (L2) are tuned for
    ImageNet-sized inputs; on small inputs (<= 32x32, tabular) larger windows find adversarials in far fewer
    queries (measured on the example CNN at a 1000-query budget: success 60% -> 65% and median queries
    440 -> 59 for L-inf at p 0.05 -> 0.3; see benchmarks/square_vs_art.py --p-init)."""
    if pixels <= 32 * 32:
        return 0.3 if norm == "linf" else 0.5
    return 0.05 if norm == "linf" else 0.1


def _window(p: float, h: int, w: int) -> tuple[int, int]:
    if h == 1:
        return 1, int(min(w, max(1, round(p * w))))
    s = int(max(1, round(np.sqrt(p * h * w))))
    return min(s, h), min(s, w)


def _corners(rng: np.random.Generator, n: int, h: int, w: int, sh: int, sw: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, h - sh + 1, size=n), rng.integers(0, w - sw + 1, size=n)


_MASKS: dict[tuple, np.ndarray] = {}  # tabulated placements (window masks, meta patterns)


def _placements(key: tuple, pattern: np.ndarray, h: int, w: int) -> np.ndarray:
    """``pattern`` (sh, sw) placed at every corner of an (h, w) grid, indexed by ``r * (w - sw + 1) + c``;
    cached under ``key``, so placing it at per-sample corners is one gather."""
    tab = _MASKS.get(key)
    if tab is None:
        sh, sw = pattern.shape
        nr, nc = h - sh + 1, w - sw + 1
        tab = np.zeros((nr * nc, h, w), dtype=pattern.dtype)
        for r in range(nr):
            for c in range(nc):
                tab[r * nc + c, r : r + sh, c : c + sw] = pattern
        if len(_MASKS) > 256:
            _MASKS.clear()
        _MASKS[key] = tab
    return tab


def _window_mask(h0: np.ndarray, w0: np.ndarray, sh: int, sw: int, h: int, w: int) -> np.ndarray:
    """Per-sample window masks, (n, 1, H, W) bool."""
    if (h - sh + 1) * (w - sw + 1) <= 4096:
        return _placements(("mask", sh, sw, h, w), np.ones((sh, sw), dtype=bool), h, w)[h0 * (w - sw + 1) + w0][:, None]
    rows = np.arange(h)[None, :]
    cols = np.arange(w)[None, :]
    r = (rows >= h0[:, None]) & (rows < h0[:, None] + sh)
    c = (cols >= w0[:, None]) & (cols < w0[:, None] + sw)
    return (r[:, :, None] & c[:, None, :])[:, None, :, :]


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


def _place(sh: int, sw: int, transposed: bool, h0: np.ndarray, w0: np.ndarray, h: int, w: int) -> np.ndarray:
    """The meta pattern (sh, sw) at per-sample corners: (n, 1, H, W), zero outside the window."""
    base = _meta_base(sh, sw)
    tab = _placements(("meta", sh, sw, h, w, transposed), base.T if transposed else base, h, w)
    return tab[h0 * (w - sw + 1) + w0][:, None]


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
    (c, h, w), _ = image_view_shape(shape)
    n = z.shape[0]
    idx = np.arange(n)
    # work in the model's own precision: float32 for float32/float16 models (half the memory traffic)
    pdt = np.float64 if oracle.model.input_dtype == np.float64 else np.float32
    x = to_chw(np.asarray(z, dtype=pdt), shape)
    if p_init is None:
        p_init = default_p_init(norm, h * w)
    budget = int(min(budget, oracle.remaining().min())) if oracle.budget is not None else int(budget)

    def done(x_best: np.ndarray, success: np.ndarray) -> AttackResult:
        z_adv = from_chw(x_best, shape)
        return meter.result(z_adv, success, perturbation_norm(z_adv - z, norm), budget)

    if budget <= 0 or n == 0:
        return done(x.copy(), np.zeros(n, dtype=bool))

    if epsilon <= 0:
        labels = oracle.labels(from_chw(x, shape), idx)
        return done(x.copy(), is_success(labels, y, target))

    if norm == "linf":
        x_best = np.clip(x + epsilon * rng.choice([-1.0, 1.0], size=(n, c, 1, w)), 0.0, 1.0)
    else:
        x_best = np.clip(x + _l2_init(n, c, h, w, epsilon, rng), 0.0, 1.0)
    scores, labels = oracle.scores(from_chw(x_best, shape), idx)
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
    for it in range(n_iters):
        if act.size == 0:
            break
        p = p_selection(p_init, it, n_iters)
        na = act.size
        if norm == "linf":
            sh, sw = _window(p, h, w)
            h0, w0 = _corners(rng, na, h, w, sh, sw)
            mask = _window_mask(h0, w0, sh, sw, h, w)
            signs = (2.0 * epsilon) * rng.integers(0, 2, size=(na, c, 1, 1)) - epsilon
            x_new = np.where(mask, np.clip(xa + signs, 0.0, 1.0), xb)
        else:
            delta = xb - xa
            sh, sw = _window(p, h, w)
            if h > 1 and min(h, w) >= 3:
                sh = sw = max(sh, 3)
                if sh % 2 == 0:
                    sh = sw = sh + 1 if sh + 1 <= min(h, w) else sh - 1
            h0, w0 = _corners(rng, na, h, w, sh, sw)
            h2, w2 = _corners(rng, na, h, w, sh, sw)
            m1 = _window_mask(h0, w0, sh, sw, h, w)
            m2 = _window_mask(h2, w2, sh, sw, h, w)
            sq = delta * delta
            dm1 = delta * m1
            norm_win1 = np.sqrt((sq * m1).sum(axis=(2, 3), keepdims=True))  # (na, c, 1, 1)
            norm_img = np.sqrt(sq.sum(axis=(1, 2, 3), keepdims=True))  # (na, 1, 1, 1)
            norm_win12 = np.sqrt((sq * (m1 | m2)).sum(axis=(2, 3), keepdims=True))
            transposed, sign = _meta_draw(sh, sw, rng)
            pattern = _place(sh, sw, transposed, h0, w0, h, w)  # (na, 1, H, W)
            new = pattern * (sign * (2.0 * rng.integers(0, 2, size=(na, c, 1, 1)) - 1.0))
            new = new + dm1 / (1e-10 + norm_win1)
            target_norm = np.sqrt(np.maximum(epsilon**2 - norm_img**2, 0.0) / c + norm_win12**2)
            new = new / np.maximum(_l2(new, (2, 3)), 1e-12) * target_norm
            d = np.where(m2, 0.0, delta)
            d = np.where(m1, new, d)
            d = d / np.maximum(_l2(d, (1, 2, 3)), 1e-12) * epsilon
            x_new = np.clip(xa + d, 0.0, 1.0)
        s_new, l_new = oracle.scores(from_chw(x_new, shape), act)
        loss_new = margin(s_new, ya, ta)
        succ_new = is_success(l_new, ya, ta)
        accept = (loss_new < la) | succ_new
        if accept.any():
            xb[accept] = x_new[accept]
            la[accept] = loss_new[accept]
        if succ_new.any():
            done_now = accept & succ_new
            x_best[act] = xb
            loss[act] = la
            success[act[done_now]] = True
            keep = ~done_now
            act, xa, xb, ya, la = act[keep], xa[keep], xb[keep], ya[keep], la[keep]
            ta = None if ta is None else ta[keep]
        if progress and (it % 25 == 0 or it == n_iters - 1):
            progress(it + 1, n_iters)
    if act.size:
        x_best[act] = xb
        loss[act] = la
    if progress:
        progress(n_iters, n_iters)
    return done(x_best, success)

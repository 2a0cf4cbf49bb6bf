"""Sparse-RS (Croce, Andriushchenko, Singh, Flammarion & Hein, AAAI 2022), L0: k pixels or features.

Score-based random search over *which* k locations to change and to what.
A location is a pixel (all its channels together) for images and a feature for
tabular inputs; a changed location takes a corner of the valid box (each
channel at 0 or 1 of its normalised range), as in the paper.

Each iteration, per still-unbroken sample: swap ``m`` of the k chosen
locations for ``m`` unchosen ones with fresh random values (``m = alpha_t k``
with the paper's decaying ``alpha`` schedule), query once, and keep the swap when
the margin loss does not increase. All samples share one batched oracle call
per iteration; the initialisation counts as one query.
"""

from __future__ import annotations

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
    pixel_channel_axes,
    to_chw,
)


def alpha_schedule(alpha_init: float, it: int, n_iters: int) -> float:
    """The paper's piecewise-constant schedule of the fraction of locations resampled per step."""
    i = int(it / max(n_iters, 1) * 10000)
    for bound, div in ((0, 1), (50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10), (6000, 12), (8000, 15)):
        if i <= bound:
            return alpha_init / div
    return alpha_init / 20


def _compose(x: np.ndarray, pos: np.ndarray, val: np.ndarray) -> np.ndarray:
    """x (n, C, P) with locations pos (n, k) set to val (n, C, k)."""
    out = x.copy()
    rows = np.arange(x.shape[0])[:, None]
    for ch in range(x.shape[1]):
        out[:, ch][rows, pos] = val[:, ch]
    return out


def l0_count(z_adv: np.ndarray, z: np.ndarray, shape: tuple[int, ...], layout: str | None = None) -> np.ndarray:
    """Changed pixels (images) or features (tabular) per sample."""
    return perturbation_norm(z_adv - z, "l0", pixel_channel_axes(shape, layout))


def sparse_rs(
    oracle: Oracle,
    z: np.ndarray,
    y: np.ndarray,
    *,
    norm: str = "l0",
    epsilon: float,
    budget: int,
    rng: np.random.Generator,
    target: np.ndarray | None = None,
    alpha_init: float = 0.3,
    progress: Progress | None = None,
) -> AttackResult:
    """Sparse-RS with ``k = int(epsilon)`` changed pixels (images) or features (tabular)."""
    norm = check_norm(norm, ("l0",))
    meter = Meter(oracle, "sparse-rs", norm, epsilon, target)
    shape = oracle.sample_shape
    (c, h, w), _ = image_view_shape(shape, oracle.layout)
    n_pos = h * w
    n = z.shape[0]
    idx = np.arange(n)
    x = to_chw(np.asarray(z, dtype=np.float64), shape, oracle.layout).reshape(n, c, n_pos)
    k = int(min(max(int(round(epsilon)), 0), n_pos))
    budget = oracle.allowance(budget)

    def done(x_best: np.ndarray, success: np.ndarray) -> AttackResult:
        z_adv = from_chw(x_best.reshape(n, c, h, w), shape, oracle.layout)
        return meter.result(z_adv, success, l0_count(z_adv, z, shape, oracle.layout), budget, {"k": k})

    if n == 0 or budget <= 0:
        return done(x.copy(), np.zeros(n, dtype=bool))
    if k == 0:
        labels = oracle.labels(z, idx)
        return done(x.copy(), is_success(labels, y, target))

    # initial k random locations with random corner values
    pos = np.argsort(rng.random((n, n_pos)), axis=1)[:, :k]
    val = rng.integers(0, 2, size=(n, c, k)).astype(np.float64)
    x_best = _compose(x, pos, val)
    scores, labels = oracle.scores(from_chw(x_best.reshape(n, c, h, w), shape, oracle.layout), idx)
    loss = margin(scores, y, target)
    success = is_success(labels, y, target)
    n_iters = budget - 1
    if progress:
        progress(0, n_iters)
    for it in range(n_iters):
        act = np.flatnonzero(~success)
        if act.size == 0:
            break
        na = act.size
        m = max(int(alpha_schedule(alpha_init, it, n_iters) * k), 1)
        m = min(m, k, n_pos - k) if n_pos > k else 0
        p_new, v_new = pos[act].copy(), val[act].copy()
        if m > 0:
            # m of the chosen locations leave, m unchosen ones come in
            out_slots = np.argsort(rng.random((na, k)), axis=1)[:, :m]
            free = rng.random((na, n_pos))
            free[np.arange(na)[:, None], p_new] = -1.0  # never re-pick a chosen location
            incoming = np.argpartition(-free, m - 1, axis=1)[:, :m]
            rows = np.arange(na)[:, None]
            p_new[rows, out_slots] = incoming
            fresh = rng.integers(0, 2, size=(na, c, m)).astype(np.float64)
            for ch in range(c):
                v_new[:, ch][rows, out_slots] = fresh[:, ch]
        else:
            # every location is chosen (k == number of locations): resample values only
            slot = rng.integers(0, k, size=na)
            v_new[np.arange(na), :, slot] = rng.integers(0, 2, size=(na, c)).astype(np.float64)
        x_new = _compose(x[act], p_new, v_new)
        s_new, l_new = oracle.scores(from_chw(x_new.reshape(na, c, h, w), shape, oracle.layout), act)
        t_a = None if target is None else target[act]
        loss_new = margin(s_new, y[act], t_a)
        succ_new = is_success(l_new, y[act], t_a)
        accept = (loss_new <= loss[act]) | succ_new
        a = act[accept]
        pos[a], val[a] = p_new[accept], v_new[accept]
        x_best[a] = x_new[accept]
        loss[a] = loss_new[accept]
        success[a] = succ_new[accept]
        if progress and (it % 25 == 0 or it == n_iters - 1):
            progress(it + 1, n_iters)
    if progress:
        progress(n_iters, n_iters)
    return done(x_best, success)

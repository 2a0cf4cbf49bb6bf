"""Attacks on regressors: maximise the output's change |f(x + d) - f(x)| inside the epsilon ball.

* ``reg_square``: Square-style random search (Andriushchenko et al. 2020): a
  stripe start at the ball's vertices, then square windows (1 x s strips for
  tabular inputs) redrawn at +-epsilon (L-infinity) or as a rescaled Gaussian
  window (L2); a proposal is kept when it moves the output further;
* ``reg_fd_pgd``: ascent on antithetic finite-difference (NES) estimates of the
  gradient of |f(x + d) - f(x)|, from a random start in the ball.

The change is the largest absolute change over the model's outputs, in output
units. A sample counts as a success once its change exceeds ``tolerance`` and
is not queried again. One query per sample measures the clean output.
"""

from __future__ import annotations

import numpy as np

from ..oracle import Oracle
from .base import AttackResult, Meter, Progress, check_norm, from_chw, image_view_shape, perturbation_norm, project, to_chw


def _values(oracle: Oracle, z: np.ndarray, idx: np.ndarray) -> np.ndarray:
    s, _ = oracle.scores(z, idx)
    return np.asarray(s, dtype=np.float64).reshape(len(z), -1)


def _change(v: np.ndarray, v0: np.ndarray) -> np.ndarray:
    return np.abs(v - v0).max(axis=1)


def reg_square(
    oracle: Oracle, z: np.ndarray, y: np.ndarray, *, norm: str = "linf", epsilon: float, budget: int, rng: np.random.Generator,
    target: np.ndarray | None = None, tolerance: float = 0.0, p_init: float = 0.1, progress: Progress | None = None,
) -> AttackResult:
    norm = check_norm(norm, ("linf", "l2"))
    meter = Meter(oracle, "reg-square", norm, epsilon, None)
    n = z.shape[0]
    shape = oracle.sample_shape
    z = np.asarray(z, dtype=np.float64)
    (c, h, w), _ = image_view_shape(shape)
    idx = np.arange(n)
    budget = oracle.allowance(budget)
    if budget < 2 or n == 0:
        return meter.result(z.copy(), np.zeros(n, bool), np.zeros(n), budget, {"output_change": np.zeros(n)})
    v0 = _values(oracle, z, idx)
    eps = float(epsilon)
    # start: vertical stripes at +-eps (L-inf), or a Gaussian direction of norm eps (L2)
    if norm == "linf":
        stripes = rng.choice([-eps, eps], size=(n, c, 1, w))
        delta = to_chw(np.zeros_like(z), shape) + stripes
        x = project(from_chw(delta, shape) + z, z, norm, eps)
    else:
        g = rng.standard_normal(size=z.shape)
        x = project(z + g * eps / np.maximum(np.linalg.norm(g.reshape(n, -1), axis=1), 1e-12).reshape(-1, *[1] * len(shape)), z, norm, eps)
    best = _change(_values(oracle, x, idx), v0)
    done = best > tolerance
    for it in range(budget - 2):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        frac = p_init * (0.5 ** min(int(10 * it / max(budget, 1)), 8))
        if h == 1:
            sw, sh = max(1, int(round(frac * w))), 1
        else:
            s = max(1, int(round(np.sqrt(frac * h * w))))
            sw = sh = min(s, h, w)
        cand = x[act].copy()
        cc = to_chw(cand, shape)
        zc = to_chw(z[act], shape)
        for j in range(act.size):
            r0 = int(rng.integers(0, h - sh + 1))
            c0 = int(rng.integers(0, w - sw + 1))
            if norm == "linf":
                cc[j, :, r0:r0 + sh, c0:c0 + sw] = zc[j, :, r0:r0 + sh, c0:c0 + sw] + rng.choice([-eps, eps], size=(c, 1, 1))
            else:
                cc[j, :, r0:r0 + sh, c0:c0 + sw] += rng.standard_normal(size=(c, sh, sw)) * eps / np.sqrt(sh * sw)
        cand = project(from_chw(cc, shape), z[act], norm, eps)
        if norm == "l2":  # spend the whole budget: rescale onto the sphere where the box allows
            d = (cand - z[act]).reshape(act.size, -1)
            nr = np.linalg.norm(d, axis=1, keepdims=True)
            cand = project(z[act] + (d * (eps / np.maximum(nr, 1e-12))).reshape(cand.shape), z[act], norm, eps)
        ch = _change(_values(oracle, cand, act), v0[act])
        better = ch > best[act]
        x[act[better]] = cand[better]
        best[act[better]] = ch[better]
        done[act] = best[act] > tolerance
        if progress:
            progress(it + 1, budget - 2)
    pert = perturbation_norm(x - z, norm)
    return meter.result(x, done, pert, budget, {"output_change": best})


def reg_fd_pgd(
    oracle: Oracle, z: np.ndarray, y: np.ndarray, *, norm: str = "linf", epsilon: float, budget: int, rng: np.random.Generator,
    target: np.ndarray | None = None, tolerance: float = 0.0, directions: int = 10, sigma: float = 1e-3,
    progress: Progress | None = None,
) -> AttackResult:
    norm = check_norm(norm, ("linf", "l2"))
    meter = Meter(oracle, "reg-fd-pgd", norm, epsilon, None)
    n = z.shape[0]
    shape = oracle.sample_shape
    z = np.asarray(z, dtype=np.float64)
    d = int(np.prod(shape))
    budget = oracle.allowance(budget)
    if budget < 2 or n == 0:
        return meter.result(z.copy(), np.zeros(n, bool), np.zeros(n), budget, {"output_change": np.zeros(n)})
    idx = np.arange(n)
    v0 = _values(oracle, z, idx)
    eps = float(epsilon)
    flat = z.reshape(n, -1)
    if norm == "linf":
        x = project((flat + rng.uniform(-eps, eps, size=flat.shape) * 0.5).reshape(z.shape), z, norm, eps)
    else:
        g = rng.standard_normal(size=flat.shape)
        x = project((flat + g * (0.5 * eps) / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)).reshape(z.shape), z, norm, eps)
    best_x = x.copy()
    best = _change(_values(oracle, x, idx), v0)
    done = best > tolerance
    q = max(1, min(directions, (budget - 2) // 3))
    per_step = 2 * q + 1
    steps = max(0, (budget - 2) // per_step)
    mom = np.zeros((n, d))
    for t in range(steps):
        alpha = eps * (0.5 if t < steps // 2 else 0.25)
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        xa = x[act].reshape(act.size, -1)
        u = rng.standard_normal(size=(act.size, q, d))
        probes = np.concatenate([xa[:, None] + sigma * u, xa[:, None] - sigma * u], axis=1).reshape(-1, *shape)
        owner = np.repeat(act, 2 * q)
        vals = _change(_values(oracle, probes, owner), np.repeat(v0[act], 2 * q, axis=0)).reshape(act.size, 2 * q)
        grad = ((vals[:, :q] - vals[:, q:])[:, :, None] * u).sum(axis=1) / (2 * sigma * q)
        grad = grad / np.maximum(np.abs(grad).sum(axis=1, keepdims=True), 1e-12)
        mom[act] = 0.75 * mom[act] + grad  # momentum over the noisy estimates (MI-FGSM-style)
        grad = mom[act]
        if norm == "linf":
            step = alpha * np.sign(grad)
        else:
            step = alpha * grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)
        nx = project((xa + step).reshape(-1, *shape), z[act], norm, eps)
        ch = _change(_values(oracle, nx, act), v0[act])
        x[act] = nx
        better = ch > best[act]
        best_x[act[better]] = nx[better]
        best[act[better]] = ch[better]
        done[act] = best[act] > tolerance
        if progress:
            progress(t + 1, steps)
    pert = perturbation_norm(best_x - z, norm)
    return meter.result(best_x, done, pert, budget, {"output_change": best})

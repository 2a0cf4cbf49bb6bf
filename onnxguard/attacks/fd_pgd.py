"""Finite-difference gradient attacks: PGD and one-step FGSM on zeroth-order gradients.

The gradient of the margin loss is estimated through the oracle only:

* ``coordinate``: central differences along every feature, ``2 d`` queries per
  estimate, exact up to O(h^2); the choice for low-dimensional (tabular) inputs;
* ``nes``: antithetic Gaussian directions (NES / SPSA, Ilyas et al. 2018),
  ``2 q`` queries per estimate; the choice for high-dimensional inputs.

On large images (more than ``SUBSPACE_DIM`` features) the ``nes`` directions
live in a low-dimensional subspace of constant tiles, as in the "tiling" prior
of Bandits-TD (Ilyas, Engstrom & Madry, ICLR 2019): a direction is drawn on a
``C x ceil(H/t) x ceil(W/t)`` grid and each cell covers a ``t x t`` tile, so a
3x224x224 input is probed in a ~3x32x32 space instead of 150k dimensions,
and the step is tile-constant. Samples are processed in chunks sized from the
input and the oracle's working-memory budget, so the probes held at once are
O(chunk x probes x input).

Each PGD step makes one oracle call holding the current iterate (to check for
success) and its ``2q`` (or ``2d``) probes, then steps along the sign of the
estimate (L-infinity) or its direction (L2) and projects onto the eps-ball and
the valid range. A sample stops being queried once it is misclassified.
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
    project,
    work_chunk,
)

COORDINATE_MAX_DIM = 64
SUBSPACE_DIM = 3 * 32 * 32  # above this many features, NES directions are drawn on a grid of tiles


class _Tiles:
    """The tiling subspace of an image input: ``lift`` maps (..., C*hl*wl) grid values to (..., *shape)."""

    def __init__(self, shape: tuple[int, ...], layout: str | None = None, target: int = SUBSPACE_DIM) -> None:
        (self.c, self.h, self.w), _ = image_view_shape(shape, layout)
        self.shape, self.layout = shape, layout
        self.t = 1
        if len(shape) >= 2 and self.c * self.h * self.w > target and self.h > 1:
            self.t = int(np.ceil(np.sqrt(self.c * self.h * self.w / target)))
        self.hl, self.wl = -(-self.h // self.t), -(-self.w // self.t)
        self.dim = self.c * self.hl * self.wl if self.t > 1 else int(np.prod(shape))

    def lift(self, u: np.ndarray) -> np.ndarray:
        if self.t == 1:
            return u
        lead = u.shape[:-1]
        g = u.reshape(-1, self.c, self.hl, self.wl)
        g = np.repeat(np.repeat(g, self.t, axis=2), self.t, axis=3)[:, :, : self.h, : self.w]
        return from_chw(np.ascontiguousarray(g), self.shape, self.layout).reshape(*lead, -1)


def _probe_directions(estimator: str, d: int, q: int, na: int, rng: np.random.Generator, dtype: type = np.float64) -> np.ndarray:
    if estimator == "coordinate":
        return np.broadcast_to(np.eye(d, dtype=dtype), (na, d, d))
    return rng.standard_normal(size=(na, q, d), dtype=dtype)


def _random_start(z: np.ndarray, norm: str, eps: float, rng: np.random.Generator) -> np.ndarray:
    flat = z.reshape(z.shape[0], -1)
    if norm == "linf":
        delta = rng.uniform(-eps, eps, size=flat.shape)
    else:
        g = rng.standard_normal(size=flat.shape)
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        delta = g * eps * rng.uniform(0, 1, size=(flat.shape[0], 1)) ** (1.0 / flat.shape[1])
    return project((flat + delta).reshape(z.shape), z, norm, eps)


def fd_pgd(
    oracle: Oracle,
    z: np.ndarray,
    y: np.ndarray,
    *,
    norm: str = "linf",
    epsilon: float,
    budget: int,
    rng: np.random.Generator,
    target: np.ndarray | None = None,
    estimator: str = "auto",
    directions: int | None = None,
    steps: int | None = None,
    sigma: float | None = None,
    random_start: bool = True,
    one_step: bool = False,
    progress: Progress | None = None,
) -> AttackResult:
    """Projected gradient descent on finite-difference gradient estimates (``one_step`` gives FGSM)."""
    norm = check_norm(norm, ("linf", "l2"))
    meter = Meter(oracle, "fgsm" if one_step else "fd-pgd", norm, epsilon, target)
    shape = oracle.sample_shape
    n = z.shape[0]
    d = int(np.prod(shape))
    z = np.asarray(z, dtype=np.float64)
    budget = oracle.allowance(budget)

    if estimator == "auto":
        estimator = "coordinate" if d <= COORDINATE_MAX_DIM else "nes"
    if estimator == "coordinate" and 2 * d + 2 > budget:
        estimator = "nes"  # not enough budget for one full coordinate sweep
    if estimator == "coordinate":
        q = d
    elif one_step:
        q = max(1, min(directions or 500, (budget - 2) // 2))
    else:
        q = max(1, min(directions or 20, (budget - 2) // 4 or 1))
    cost = 2 * q + 1  # probes + the iterate itself
    if one_step:
        n_steps = 1
        random_start = False
    else:
        n_steps = steps or max(1, (budget - 1) // cost)
        n_steps = min(n_steps, max(0, (budget - 1) // cost))
    h0 = sigma if sigma is not None else (1e-3 if estimator == "coordinate" else 5e-3)
    h = np.full(n, h0)
    alpha = epsilon if one_step else 2.5 * epsilon / max(n_steps, 1)

    tiles: _Tiles | None = None

    def result(z_adv: np.ndarray, success: np.ndarray) -> AttackResult:
        extra = {"estimator": estimator, "directions": q, "steps": n_steps}
        if estimator == "nes" and tiles is not None and tiles.t > 1:
            extra["subspace"] = f"tiles {tiles.t}x{tiles.t} ({tiles.dim} dimensions)"
        return meter.result(z_adv, success, perturbation_norm(z_adv - z, norm), budget, extra)

    success = np.zeros(n, dtype=bool)
    if n == 0 or budget <= 0:
        return result(z.copy(), success)
    if epsilon <= 0 or n_steps == 0 or budget < cost + 1:
        labels = oracle.labels(z, np.arange(n))
        return result(z.copy(), is_success(labels, y, target))

    # probes are built in the model's own precision: float32 for float32/float16 models (half the memory traffic)
    pdt = np.float64 if oracle.model.input_dtype == np.float64 else np.float32
    x_cur = _random_start(z, norm, epsilon, rng) if random_start else z.copy()
    if progress:
        progress(0, n_steps)
    tiles = _Tiles(shape, oracle.layout) if estimator == "nes" else None
    dl = tiles.dim if tiles is not None else d
    # samples per oracle call: the iterate and its probes, plus the directions, within the working memory
    chunk = work_chunk(oracle, cost * d * np.dtype(pdt).itemsize, arrays=3)
    for step in range(n_steps):
        act_all = np.flatnonzero(~success)
        if act_all.size == 0:
            break
        for c0 in range(0, act_all.size, chunk):
            act = act_all[c0 : c0 + chunk]
            na = act.size
            u_low = _probe_directions(estimator, dl, q, na, rng, pdt)  # (na, q, dl)
            u = tiles.lift(u_low) if tiles is not None else u_low  # (na, q, d)
            base = x_cur[act].reshape(na, 1, d).astype(pdt)
            hu = h[act].reshape(na, 1, 1).astype(pdt) * u
            del u
            batch = np.empty((na, cost, d), dtype=pdt)  # the iterate, then its 2q probes
            batch[:, :1] = base
            np.add(base, hu, out=batch[:, 1 : 1 + q])
            np.subtract(base, hu, out=batch[:, 1 + q :])
            del hu
            batch = batch.reshape(na * cost, *shape)
            ids = np.repeat(act, cost)
            scores, labels = oracle.scores(batch, ids)
            del batch
            scores = scores.reshape(na, cost, -1)
            labels = labels.reshape(na, cost)
            y_a = y[act]
            t_a = None if target is None else target[act]
            succ_now = is_success(labels[:, 0], y_a, t_a)
            success[act[succ_now]] = True
            # ascend the negative margin: L = -margin
            lp = -margin(scores[:, 1 : 1 + q].reshape(na * q, -1), np.repeat(y_a, q), None if t_a is None else np.repeat(t_a, q))
            lm = -margin(scores[:, 1 + q :].reshape(na * q, -1), np.repeat(y_a, q), None if t_a is None else np.repeat(t_a, q))
            diff = (lp - lm).reshape(na, q, 1)
            if estimator == "coordinate":
                g = (diff[:, :, 0] / (2 * h[act][:, None]))
            else:
                g = np.einsum("nq,nqd->nd", diff[:, :, 0], u_low, dtype=np.float64) / (2 * h[act][:, None] * q)
            flat_zero = np.abs(g).max(axis=1) == 0
            h[act[flat_zero]] = np.minimum(h[act[flat_zero]] * 4, max(epsilon, h0))  # flat region: widen the probe
            move = ~succ_now
            if not move.any():
                continue
            gm = g[move]
            flat = flat_zero[move]
            if flat.any():  # saturated scores give no gradient: explore with a random direction instead of standing still
                gm[flat] = rng.standard_normal(size=(int(flat.sum()), dl))
            if norm == "linf":
                stepv = alpha * np.sign(gm)
            else:
                stepv = alpha * gm / np.maximum(np.linalg.norm(gm, axis=1, keepdims=True), 1e-12)
            if tiles is not None and tiles.t > 1:
                stepv = tiles.lift(stepv)
                if norm == "l2":  # a tile-constant step has the norm of the grid step times the tile side
                    stepv /= tiles.t
            sel = act[move]
            x_new = x_cur[sel].reshape(len(sel), d) + stepv
            x_cur[sel] = project(x_new.reshape(len(sel), *shape), z[sel], norm, epsilon)
        if progress:
            progress(step + 1, n_steps)
    # final check of the last iterate for samples still unbroken
    act = np.flatnonzero(~success)
    if act.size and (oracle.budget is None or oracle.remaining(act).min() >= 1):
        labels = oracle.labels(x_cur[act], act)
        success[act] = is_success(labels, y[act], None if target is None else target[act])
    if progress:
        progress(n_steps, n_steps)
    return result(x_cur, success)


def fgsm(oracle: Oracle, z: np.ndarray, y: np.ndarray, **kw: object) -> AttackResult:
    """One-step FGSM on a finite-difference gradient estimate."""
    kw.pop("one_step", None)
    return fd_pgd(oracle, z, y, one_step=True, **kw)  # type: ignore[arg-type]

"""One-pixel style attack (Su, Vargas & Sakurai, 2019): differential evolution over k locations.

For very small k (1 to a few pixels or features). A candidate encodes, for each
of the k locations, its position and its new value per channel; scipy's
``differential_evolution`` (DE/rand/1, F = 0.5, no crossover, as in the paper)
evolves a population of ``popsize`` candidates per sample. The whole
population of a generation is evaluated in one oracle call
(``vectorized=True``), and the search stops at the first candidate that
succeeds. Samples are attacked one after the other; the generation count is
planned so that ``popsize * (generations + 1) <= budget``. The objective is the
margin loss (untargeted or targeted); only scores are used.
"""

from __future__ import annotations

import numpy as np

from ..oracle import Oracle
from .base import AttackResult, Meter, Progress, check_norm, from_chw, image_view_shape, is_success, margin, to_chw
from .sparse_rs import l0_count


def one_pixel(
    oracle: Oracle,
    z: np.ndarray,
    y: np.ndarray,
    *,
    norm: str = "l0",
    epsilon: float,
    budget: int,
    rng: np.random.Generator,
    target: np.ndarray | None = None,
    popsize: int | None = None,
    progress: Progress | None = None,
) -> AttackResult:
    """Differential evolution over ``k = int(epsilon)`` pixels (images) or features (tabular)."""
    norm = check_norm(norm, ("l0",))
    meter = Meter(oracle, "one-pixel", norm, epsilon, target)
    shape = oracle.sample_shape
    (c, h, w), _ = image_view_shape(shape, oracle.layout)
    n_pos = h * w
    n = z.shape[0]
    x = to_chw(np.asarray(z, dtype=np.float64), shape, oracle.layout).reshape(n, c, n_pos)
    k = int(min(max(int(round(epsilon)), 0), n_pos))
    budget = oracle.allowance(budget)
    pop = int(max(5, popsize or min(100, budget // 10)))  # scipy wants at least 5 candidates
    gens = budget // max(pop, 1) - 1
    x_best = x.copy()
    success = np.zeros(n, dtype=bool)

    def done() -> AttackResult:
        z_adv = from_chw(x_best.reshape(n, c, h, w), shape, oracle.layout)
        extra = {"k": k, "popsize": pop, "generations": max(gens, 0)}
        return meter.result(z_adv, success, l0_count(z_adv, z, shape, oracle.layout), budget, extra)

    if n == 0 or budget <= 0:
        return done()
    if k == 0 or gens < 0:
        if k == 0:
            labels = oracle.labels(z, np.arange(n))
            success[:] = is_success(labels, y, target)
        return done()

    # one gene block per location: [position, value of channel 0, ..., value of channel c-1]
    bounds = [(0.0, n_pos - 1e-9)] + [(0.0, 1.0)] * c
    bounds = bounds * k
    n_par = len(bounds)

    def build(i: int, cand: np.ndarray) -> np.ndarray:
        """cand (S, n_par) -> inputs (S, C, P) for sample i."""
        s = cand.shape[0]
        blocks = cand.reshape(s, k, 1 + c)
        posn = np.floor(blocks[:, :, 0]).astype(np.int64).clip(0, n_pos - 1)
        vals = blocks[:, :, 1:]  # (S, k, C)
        out = np.repeat(x[i][None], s, axis=0)
        rows = np.arange(s)[:, None]
        for ch in range(c):
            out[:, ch][rows, posn] = vals[:, :, ch]
        return out

    for i in range(n):
        state: dict[str, np.ndarray | None] = {"hit": None}
        t_i = None if target is None else target[i : i + 1]

        def objective(params: np.ndarray, i: int = i) -> np.ndarray:
            cand = np.atleast_2d(params.T)  # (S, n_par)
            xs = build(i, cand)
            if oracle.budget is not None and oracle.remaining(np.array([i]))[0] < len(cand):
                return np.full(len(cand), np.inf)  # planned never to happen
            owners = np.full(len(cand), i)
            scores, labels = oracle.scores(from_chw(xs.reshape(len(cand), c, h, w), shape, oracle.layout), owners)
            loss = margin(scores, np.full(len(cand), y[i]), None if t_i is None else np.repeat(t_i, len(cand)))
            ok = is_success(labels, np.full(len(cand), y[i]), None if t_i is None else np.repeat(t_i, len(cand)))
            if ok.any() and state["hit"] is None:
                state["hit"] = xs[int(np.flatnonzero(ok)[np.argmin(loss[ok])])]
            return loss

        from scipy.optimize import differential_evolution  # imported when used: keeps scanner start-up light

        init = rng.random((pop, n_par)) * np.array([b[1] for b in bounds])
        differential_evolution(
            objective, bounds, strategy="rand1bin", maxiter=gens, popsize=pop, tol=0.0, atol=0.0,
            mutation=0.5, recombination=1.0, init=init, polish=False, updating="deferred",
            vectorized=True, rng=int(rng.integers(2**31)),
            callback=lambda intermediate_result: state["hit"] is not None,
        )
        if state["hit"] is not None:
            x_best[i] = state["hit"]
            success[i] = True
        if progress:
            progress(i + 1, n)
    return done()

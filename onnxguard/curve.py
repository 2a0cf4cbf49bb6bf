"""One attack over a list of epsilons: the robustness curve and each sample's minimal perturbation.

In the spirit of Foolbox's multi-epsilon calls, a curve is *not* one full
attack per epsilon:

* a **minimisation** attack (HopSkipJump) runs once; the perturbation it found
  for a sample answers every epsilon (broken at ``eps`` iff found ``<= eps``);
* a **fixed-epsilon** attack (Square, FD-PGD, Sparse-RS, ...) is bisected per
  sample over the sorted epsilon grid: every sample is first attacked at the
  largest epsilon (a sample that resists it is taken to resist every smaller
  one and is not attacked again); a broken sample is then attacked at the
  middle of the epsilons still undecided for it, and so on. A success at
  ``eps`` decides every epsilon ``>= `` the perturbation found; a failure at
  ``eps`` decides every smaller one. Samples that want the same epsilon in a
  round share one attack call. About ``1 + log2(len(grid))`` runs for a broken
  sample, one for a robust one (the old ascending scheme paid one run per
  epsilon for every robust sample).

The query budget is **one total per sample over the whole curve**: the first
run (at the largest epsilon) may spend all of it; what a sample did not spend
there is shared out over the bisection rounds it still needs (the remaining
queries divided by the rounds left). A sample with too few queries left for
another run keeps the epsilons it has decided; the smaller ones count as not
broken (conservative for the curve; the graded rate at the largest epsilon had
the full budget).

The result per sample is the smallest perturbation found (``inf`` where none):
the curve ``success(eps) = found <= eps`` is monotone by construction. With
``minimise``, a fixed-epsilon attack's grid is refined with a log-spaced grid
(whole numbers for L0) so that the smallest perturbation is located more
finely than the policy's list. The inference "fails at eps => fails below
eps" is the usual assumption of such curves; a random attack may break a
sample at a smaller epsilon that it missed at a larger one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .attacks import AttackSpec
from .attacks.base import AttackResult, perturbation_norm, pixel_channel_axes
from .errors import OnnxGuardError
from .oracle import Oracle

MakeOracle = Callable[[np.ndarray, int], Oracle]  # (the samples, as indices into z; per-sample budget of this run) -> a fresh oracle


@dataclass
class CurveRun:
    found: np.ndarray  # (n,) smallest perturbation of a verified adversarial (inf where none)
    z_adv: np.ndarray  # (n, *shape) the adversarial input achieving it (the clean input where none)
    queries: np.ndarray  # (n,) queries spent per sample, over every run
    runs: np.ndarray  # (n,) attack runs per sample
    grid: list[float]
    wall_time: float = 0.0
    ort_time: float = 0.0
    extra: dict = field(default_factory=dict)

    def broken_at(self, eps: float) -> np.ndarray:
        return self.found <= eps * (1 + 1e-9) + 1e-12


def refine_grid(eps_list: list[float], norm: str, points: int = 12) -> list[float]:
    """The policy's epsilons plus a finer grid below the largest (whole numbers for L0)."""
    top = max(eps_list)
    if top <= 0:
        return sorted(set(eps_list))
    if norm == "l0":
        extra = np.unique(np.round(np.geomspace(1, top, min(points, int(top)))).astype(int)).tolist()
    else:
        extra = np.geomspace(top / 64, top, points).tolist()
    return sorted(set(float(e) for e in list(eps_list) + extra))


def _measure(res: AttackResult, z: np.ndarray, eps: float | None, oracle: Oracle) -> None:
    """Norms are measured here, once, on the input the attack returned (as Foolbox's ``__call__`` does):
    an adversarial outside the valid box or, for a fixed-epsilon run, beyond epsilon is an error, never
    silently clipped; the measured norm replaces the attack's own figure."""
    norm = res.norm
    if res.z_adv.shape != z.shape:
        raise OnnxGuardError(f"internal: {res.attack} returned inputs of shape {res.z_adv.shape[1:]} for samples of {z.shape[1:]}")
    outside = (res.z_adv < -1e-6) | (res.z_adv > 1 + 1e-6)
    if outside.any():
        raise OnnxGuardError(f"internal: {res.attack} returned an input outside the valid range")
    delta = np.asarray(res.z_adv, dtype=np.float64) - z
    axes = None
    if norm == "l0":  # a feature counts when it moved by more than float32 rounding (attacks may work in the model's precision)
        axes = pixel_channel_axes(z.shape[1:], oracle.layout)
        delta = np.where(np.abs(delta) > 1e-6, delta, 0.0)
    d = perturbation_norm(delta, norm, axes)
    ok = np.asarray(res.success, dtype=bool)
    if eps is not None and res.epsilon is not None:
        # float32 rounding of each element: ~6e-8 for L-inf, ~6e-8 * sqrt(elements) for L2
        slack = 1e-6 if norm != "l2" else 1e-6 + 1e-7 * float(np.sqrt(max(1, int(np.prod(z.shape[1:])))))
        over = ok & (d > float(eps) * (1 + 1e-5) + slack)
        if over.any():
            raise OnnxGuardError(f"internal: {res.attack} returned an adversarial of {norm} norm {d[over].max():.6g}, beyond its epsilon {float(eps):g}")
    res.perturbation = np.where(ok, d, res.perturbation)


def attack_over_epsilons(
    attack: AttackSpec,
    make_oracle: MakeOracle,
    z: np.ndarray,
    y: np.ndarray,
    target: np.ndarray | None,
    eps_list: list[float],
    *,
    norm: str,
    budget: int,
    rng: np.random.Generator,
    minimise: bool = False,
    progress: Callable[[int, int], None] | None = None,
    opts: dict | None = None,
) -> CurveRun:
    """Run ``attack`` so that every epsilon of ``eps_list`` is decided for every sample."""
    opts = dict(opts or {})
    n = len(z)
    found = np.full(n, np.inf)
    z_adv = z.copy()
    queries = np.zeros(n, dtype=np.int64)
    runs = np.zeros(n, dtype=np.int64)
    wall = ort = 0.0

    def run(sel: np.ndarray, eps: float | None, run_budget: int | None = None) -> AttackResult:
        nonlocal wall, ort
        b = budget if run_budget is None else int(run_budget)
        oracle = make_oracle(sel, b)
        res: AttackResult = attack.fn(
            oracle, z[sel], y[sel], norm=norm, epsilon=eps, budget=b, rng=rng,
            target=None if target is None else target[sel], **opts,
        )
        if oracle.budget is not None and (oracle.queries > oracle.budget).any():
            raise OnnxGuardError("internal: an attack exceeded its query budget")
        _measure(res, z[sel], eps, oracle)
        queries[sel] += oracle.queries  # the oracle's count, not the attack's own: nothing bypasses it
        runs[sel] += 1
        wall += res.wall_time
        ort += res.ort_time
        return res

    if attack.minimisation:
        grid = sorted(eps_list)
        if n:
            if progress:
                opts["progress"] = progress
            res = run(np.arange(n), max(grid))
            pert = np.asarray(res.extra.get("min_perturbation", np.where(res.success, res.perturbation, np.inf)), dtype=np.float64)
            ok = np.isfinite(pert)
            found[ok] = pert[ok]
            z_adv[ok] = res.z_adv[ok]
        return CurveRun(found, z_adv, queries, runs, grid, wall, ort, {"scheme": "minimisation"})

    grid = refine_grid(eps_list, norm) if minimise else sorted(set(float(e) for e in eps_list))
    g = np.asarray(grid)
    lo = np.full(n, -1)  # largest grid index at which the attack failed
    total_rounds = 1 + int(np.ceil(np.log2(max(len(grid), 1)))) + 1
    rnd = 0
    while True:
        # the grid indices still undecided per sample: above the last failure, below the best found
        want = np.full(n, -1)
        for i in range(n):
            und = np.flatnonzero((np.arange(len(g)) > lo[i]) & (g < found[i] * (1 - 1e-9) - 1e-12))
            if und.size:
                want[i] = und[-1] if runs[i] == 0 else und[len(und) // 2]
        if (want < 0).all():
            break
        for j in np.unique(want[want >= 0]):
            sel = np.flatnonzero(want == j)
            if runs[sel].max() == 0:
                b = budget  # the first run, at the largest epsilon, may spend the whole budget
            else:
                und = np.array([np.count_nonzero((np.arange(len(g)) > lo[i]) & (g < found[i] * (1 - 1e-9) - 1e-12)) for i in sel])
                rounds_left = np.ceil(np.log2(und + 1)).astype(np.int64).clip(min=1)
                b = int(((budget - queries[sel]) // rounds_left).min())
            if b < 2:  # too few queries left for another run: the undecided smaller epsilons count as not broken
                lo[sel] = np.maximum(lo[sel], j)
                continue
            res = run(sel, float(g[j]), b)
            hit = res.success
            # a success at g[j] is an adversarial within g[j]; its own norm may be smaller
            pert = np.minimum(np.nan_to_num(res.perturbation, nan=g[j]), g[j])
            better = hit & (pert < found[sel])
            s = sel[better]
            found[s] = pert[better]
            z_adv[s] = res.z_adv[better]
            lo[sel[~hit]] = np.maximum(lo[sel[~hit]], j)
        rnd += 1
        if progress:
            progress(min(rnd, total_rounds - 1), total_rounds)
    if progress:
        progress(total_rounds, total_rounds)
    return CurveRun(found, z_adv, queries, runs, grid, wall, ort, {"scheme": "bisection"})

"""Regressor checks: how far the prediction moves inside the epsilon ball.

A sample counts as a success when an attack moves its prediction by more than
the check's tolerance (output units, or a fraction of the spread of the clean
predictions over the samples); the graded figure is the share of such samples,
with its Wilson interval. The curve over epsilons is the bisection of
``onnxguard.curve``; one query per sample, inside its budget, re-measures the
change of the adversarial that was kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .attacks import ATTACKS
from .curve import attack_over_epsilons
from .evasion import Prepared, _pick, _stable_hash, protected_inputs
from .oracle import Oracle
from .outputs import as_output_dir
from .policy import CheckSpec
from .report import CurvePoint, EvasionCheck, QueryStats, Quantity, Rate

DEFAULT_TOLERANCE = 0.1  # of the spread, when the check gives none


def clean_values(prep: Prepared) -> np.ndarray:
    o = Oracle(prep.model, prep.domain, n_samples=len(prep.z), budget=None)
    s, _ = o.scores(prep.z, np.arange(len(prep.z)))
    return np.asarray(s, dtype=np.float64).reshape(len(prep.z), -1)


def tolerance_for(spec: CheckSpec, values: np.ndarray) -> tuple[float, str]:
    tol = spec.tolerance if spec.tolerance is not None else DEFAULT_TOLERANCE
    if spec.tolerance_of == "absolute":
        return float(tol), f"{tol:g} (output units)"
    spread = float(values.std(axis=0).max()) if len(values) > 1 else 0.0
    if spread <= 0:
        return float(tol), f"{tol:g} (output units: the clean predictions have no spread to scale by)"
    return float(tol * spread), f"{tol:g} x the spread of the clean predictions ({spread:.4g}) = {tol * spread:.4g}"


def _not_run(spec: CheckSpec, reason: str, seed: int) -> EvasionCheck:
    return EvasionCheck(id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=max(spec.epsilons), epsilons=spec.epsilons,
                        threat_model="scores", status="not_run", reason=reason, seed=seed, space="box")


def run_regression_check(
    prep: Prepared, spec: CheckSpec, *, values: np.ndarray, seed: int,
    progress: Callable[[int, int], None] | None = None, save_dir: Path | None = None,
) -> EvasionCheck:
    attack = ATTACKS.get(spec.attack)
    if attack is None or "regressor" not in attack.tasks:
        return _not_run(spec, f"{spec.attack} is not an attack on regressors", seed)
    rng = np.random.default_rng([seed, _stable_hash(spec.check_id)])
    n_budget = spec.budget
    if n_budget < 3:
        return _not_run(spec, f"a budget of {n_budget} queries per sample is too small (at least 3)", seed)
    idx = _pick(len(prep.z), spec.samples, rng)
    z = prep.z[idx]
    n = len(idx)
    tol, tol_text = tolerance_for(spec, values)
    y0 = np.zeros(n, np.int64)

    def make_oracle(part: np.ndarray, b: int) -> Oracle:
        return Oracle(prep.model, prep.domain, n_samples=len(part), budget=b, rows=idx[part])

    run = attack_over_epsilons(attack, make_oracle, z, y0, None, spec.epsilons, norm=spec.norm, budget=n_budget - 1, rng=rng,
                               progress=progress, opts={"tolerance": tol})
    check = Oracle(prep.model, prep.domain, n_samples=n, budget=1, rows=idx)
    s, _ = check.scores(run.z_adv, np.arange(n))
    change = np.abs(np.asarray(s, dtype=np.float64).reshape(n, -1) - values[idx]).max(axis=1)
    eps_max = max(spec.epsilons)
    succ = run.broken_at(eps_max) & (change > tol)
    k = int(succ.sum())
    curve = []
    for eps in spec.epsilons:
        s_ = int((run.broken_at(eps) & (change > tol)).sum())
        curve.append(CurvePoint(epsilon=eps, success_rate=Rate.of(s_, n), robust_accuracy=Rate.of(n - s_, n)))
    queries = run.queries + check.queries
    if k == 0:
        finding = (f"no prediction moved by more than the tolerance {tol_text} for any of {n} samples within {n_budget} queries per sample "
                   f"at epsilon {eps_max:g} ({spec.norm}); largest change found {change.max():.4g}; this is not a proof of robustness")
    else:
        finding = (f"the prediction moved by more than the tolerance {tol_text} for {k} of {n} samples at epsilon <= {eps_max:g} ({spec.norm}); "
                   f"median change found {float(np.median(change)):.4g}")
    saved = None
    if save_dir is not None and n:
        out = as_output_dir(save_dir, "--save-adversarials", protected_inputs(prep))
        assert out is not None
        arrays = dict(x=prep.domain.from_unit(z), x_adv=prep.domain.from_unit(run.z_adv), success=succ,
                      y=values[idx], y_adv=np.asarray(s, dtype=np.float64).reshape(n, -1))
        saved = str(out.write(f"{spec.check_id}.npz", lambda f: np.savez_compressed(f, **arrays)))
    return EvasionCheck(
        id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=eps_max, epsilons=spec.epsilons, threat_model="scores",
        status="completed", n_samples=n, n_attacked=n, success_rate=Rate.of(k, n), finding=finding,
        queries=QueryStats.of(queries, n_budget), perturbation=Quantity.of(run.found[succ]) if succ.any() else None,
        robustness_curve=curve if len(spec.epsilons) > 1 else [], seed=seed, wall_time_s=run.wall_time, ort_time_s=run.ort_time + check.ort_time,
        adversarials=saved, space="box", tolerance=tol, output_change=Quantity.of(change),
    )

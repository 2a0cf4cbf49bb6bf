"""Evasion checks: the samples every check shares (``prepare``) and one policy check run over its epsilons.

``prepare`` loads the model and the data, resolves the valid range and takes the
clean pass; ``run_evasion_check`` runs one ``[[checks]]`` entry (see
``onnxguard.curve``) and returns its ``EvasionCheck`` figures, ungraded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .attacks import ATTACKS, labels_only_attack
from .curve import attack_over_epsilons
from .data import Samples, fit_to_model, labels_for, load_data, resolve_domain, synthetic_samples
from .errors import DataError
from .model import LoadedModel, load_model
from .options import ScanOptions
from .outputs import Protected, as_output_dir
from .oracle import Domain, Oracle
from .policy import CheckSpec, LoadedPolicy
from .report import CurvePoint, EvasionCheck, QueryStats, Quantity, Rate


@dataclass
class Prepared:
    """What every check needs: the model, samples in the normalised space, labels."""

    model: LoadedModel
    samples: Samples
    domain: Domain
    domain_source: str
    z: np.ndarray  # (N, *shape) normalised
    y: np.ndarray  # (N,) reference labels (given, or the model's predictions)
    pred: np.ndarray  # (N,) the model's clean predictions
    labels_given: bool
    clean_queries: int
    clean_ort_time: float


def prepare(opts: ScanOptions, policy: LoadedPolicy, rng: np.random.Generator, n_needed: int, raw: object = None) -> Prepared:
    samples = load_data(opts.data_path) if opts.data_path else None
    model = load_model(
        opts.model_path,
        probe=samples.x if samples is not None and samples.x.ndim > 1 else None,
        max_bytes=policy.policy.limits.max_model_mb * 1024 * 1024,
        raw=raw,
        inference_timeout_s=policy.policy.limits.inference_timeout_s,
    )
    value_range = opts.value_range or policy.policy.threat_model.range
    if samples is not None:
        samples = fit_to_model(samples, model)
    domain, dsrc = resolve_domain(model, samples, value_range)
    if opts.value_range is None and value_range is not None:
        dsrc = "given" if any(d.key == "threat_model.range" for d in policy.deviations) else "policy"
    if samples is None:
        if not policy.policy.threat_model.allow_synthetic:
            raise DataError(
                f"policy '{policy.policy.name}' refuses synthetic evidence: pass --data with samples representative of the model's inputs"
            )
        samples = synthetic_samples(model, domain, max(n_needed, 1), rng)
    z = domain.to_unit(samples.x)
    clean = Oracle(model, domain, n_samples=len(z), budget=None)
    pred = clean.labels(z, np.arange(len(z)))
    y_given = labels_for(samples, model)
    y = y_given if y_given is not None else pred
    return Prepared(model, samples, domain, dsrc, z, y, pred, y_given is not None, int(clean.queries.sum()), clean.ort_time)


def _pick(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(n_total)[: min(n, n_total)])


def _not_run(spec: CheckSpec, threat: str, reason: str, seed: int) -> EvasionCheck:
    return EvasionCheck(
        id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=max(spec.epsilons), epsilons=spec.epsilons,
        threat_model=threat, targeted=spec.targeted, target=spec.target, status="not_run", reason=reason, seed=seed,  # type: ignore[arg-type]
    )


def pick_targets(y: np.ndarray, n_classes: int | None, spec_target: int | None, rng: np.random.Generator) -> np.ndarray:
    if spec_target is not None:
        return np.full(y.shape, spec_target, dtype=np.int64)
    c = n_classes or int(y.max()) + 2
    off = rng.integers(1, c, size=y.shape)
    return (y + off) % c


def run_evasion_check(
    prep: Prepared,
    spec: CheckSpec,
    *,
    threat: str,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    save_dir: Path | None = None,
    min_perturbation: bool | None = None,
    collect: list | None = None,
) -> EvasionCheck:
    """Run one policy check over its epsilons (see ``onnxguard.curve``), clean accuracy, the figures.

    Under a labels-only threat model (or for a model that outputs labels only) a
    score-based L2 / L-infinity check runs HopSkipJump in its place, with the
    check's id, norm, epsilons, samples and budget, and says so in its finding;
    a score-based L0 check is not run (there is no labels-only L0 attack here).
    ``collect``, when given, receives ``(sample indices, labels, targets, CurveRun)``."""
    attack = ATTACKS.get(spec.attack)
    if attack is None:
        return _not_run(spec, threat, f"attack '{spec.attack}' is not available in onnxguard {__version__}", seed)
    if "box" not in attack.spaces or "classifier" not in attack.tasks:
        return _not_run(spec, threat, f"{spec.attack} is an attack on {'/'.join(attack.tasks)} models ({'/'.join(attack.spaces)} inputs)", seed)
    substituted = None
    if attack.needs_scores and threat == "labels":
        why = "the model outputs labels only" if not prep.model.has_scores else "the policy's threat model is labels-only"
        sub = labels_only_attack(spec.norm)
        if sub is None:
            return _not_run(spec, threat, f"{spec.attack} needs scores and {why}; no labels-only {spec.norm} attack is available", seed)
        substituted = f"{spec.attack} needs scores and {why}: {sub.title.split(' (')[0]} (labels only) ran in its place"
        attack = sub
    rng = np.random.default_rng([seed, _stable_hash(spec.check_id)])
    n_budget = spec.budget
    sel = _pick(len(prep.z), spec.samples, rng)
    y = prep.y[sel]
    correct = prep.pred[sel] == y
    tgt_class = spec.target
    targeted = spec.targeted or tgt_class is not None
    targets_all = pick_targets(y, prep.model.n_classes, tgt_class, rng) if targeted else None
    attackable = correct & (targets_all != y if targets_all is not None else True)
    idx = sel[attackable]
    z = prep.z[idx]
    ya = y[attackable]
    ta = targets_all[attackable] if targets_all is not None else None
    clean_acc = Rate.of(int(correct.sum()), int(len(sel)))

    eps_list = spec.epsilons
    n = len(idx)
    want_min = spec.min_perturbation if min_perturbation is None else min_perturbation
    opts: dict = {}
    if "starts" in attack.options:
        opts["starts"] = (prep.z, prep.pred)  # the other samples, whose labels the clean pass already knows

    def make_oracle(part: np.ndarray) -> Oracle:
        return Oracle(prep.model, prep.domain, n_samples=len(part), budget=n_budget, labels_only=(threat == "labels"), rows=idx[part])

    run = attack_over_epsilons(
        attack, make_oracle, z, ya, ta, eps_list, norm=spec.norm, budget=n_budget, rng=rng,
        minimise=want_min, progress=progress, opts=opts,
    )
    if collect is not None:
        collect.append((idx, ya, ta, run))
    eps_max = max(eps_list)
    succ = run.broken_at(eps_max)
    curve = []
    for eps in eps_list:
        s = int(run.broken_at(eps).sum())
        curve.append(CurvePoint(epsilon=eps, success_rate=Rate.of(s, n), robust_accuracy=Rate.of(n - s, int(len(sel)))))
    rate = Rate.of(int(succ.sum()), n)
    runs_note = "" if attack.minimisation else (f", up to {int(run.runs.max())} runs per sample over the epsilons" if n and run.runs.max() > 1 else "")
    budget_note = f"{n_budget} queries per sample" + (" per run" if runs_note else "") + runs_note
    if n == 0:
        finding = "no correctly classified sample to attack"
    elif succ.sum() == 0:
        finding = f"no adversarial example found for any of {n} samples within {budget_note} at epsilon {eps_max:g} ({spec.norm}); this is not a proof of robustness"
    else:
        finding = f"adversarial examples found for {int(succ.sum())} of {n} correctly classified samples at epsilon <= {eps_max:g} ({spec.norm}); not found within {budget_note} for the other {n - int(succ.sum())}"
    if attack.minimisation and n:
        med = float(np.median(run.found))
        finding += f"; median smallest perturbation found {med:.4g}" if np.isfinite(med) else ""
    if substituted:
        finding = f"{substituted}. {finding}"
    if targeted and n:
        finding += f" (targeted{' at class ' + str(tgt_class) if tgt_class is not None else ', a random other class per sample'})"
    saved = None
    if save_dir is not None and n:
        out = as_output_dir(save_dir, "--save-adversarials", protected_inputs(prep))
        assert out is not None
        arrays = dict(x=prep.domain.from_unit(z), x_adv=prep.domain.from_unit(run.z_adv), y=ya, success=succ,
                      min_perturbation=run.found, **({"target": ta} if ta is not None else {}))
        saved = str(out.write(f"{spec.check_id}.npz", lambda f: np.savez_compressed(f, **arrays)))
    return EvasionCheck(
        id=spec.check_id, attack=attack.name, norm=spec.norm, epsilon=eps_max, epsilons=eps_list,
        threat_model=threat,  # type: ignore[arg-type]
        targeted=targeted, target=tgt_class, status="completed", n_samples=int(len(sel)), n_attacked=n,
        clean_accuracy=clean_acc, success_rate=rate, finding=finding,
        queries=QueryStats.of(run.queries, n_budget),
        perturbation=Quantity.of(run.found[succ]) if succ.any() else None,
        min_perturbation=Quantity.of(run.found) if (want_min or attack.minimisation) and n else None,
        robustness_curve=curve if len(eps_list) > 1 else [], seed=seed,
        wall_time_s=run.wall_time, ort_time_s=run.ort_time, adversarials=saved,
    )


def protected_inputs(prep: Prepared) -> Protected:
    """The scan's inputs, which no output may replace: the model (and a followed link's target), its external data, the samples."""
    model = Path(prep.model.path)
    folder = Path(os.path.realpath(model)).parent
    paths: list[Path | str | None] = [model, prep.samples.source if not prep.samples.synthetic else None]
    paths += [folder / loc for loc, _, _ in prep.model.external_files]
    return Protected.of(paths)


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def inspect_file(opts: ScanOptions, policy: LoadedPolicy) -> tuple[object, list]:
    """Read the model safely and run the static checks; refuse models that must not run (exit 2)."""

    return inspect_path(opts.model_path, policy, follow_symlinks=opts.follow_symlinks)


def inspect_path(path: Path, policy: LoadedPolicy, *, follow_symlinks: bool = False, what: str = "") -> tuple[object, list]:
    """``inspect_file`` for any model the scan runs (the scanned one, a --transfer-from surrogate)."""
    from . import safeload
    from .errors import ModelLoadError
    from .static import esc, inspect_model, refusals

    lim = policy.policy.limits
    raw = safeload.read_model(Path(path), max_bytes=lim.max_model_mb * 1024 * 1024, follow_symlinks=follow_symlinks)
    findings = inspect_model(raw, path, memory_limit=lim.max_memory_mb * 1024 * 1024, checks=policy.policy.static.checks)
    refused = refusals(findings)
    if refused:
        raise ModelLoadError(f"{what}{esc(Path(path).name, 200)} refused before running: " + "; ".join(f.detail for f in refused[:3]))
    return raw, findings

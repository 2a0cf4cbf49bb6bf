"""One pass through the scanner: load, inspect, data, oracle, checks, grade, report.

Data flows one way; each stage returns a value object. ``run_scan`` is the
in-process library entry point; ``onnxguard.sandbox.scan_isolated`` runs the
same thing in a resource-limited child process.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .attacks import ATTACKS
from .attacks.base import AttackResult
from .data import Samples, fit_to_model, labels_for, load_data, resolve_domain, synthetic_samples
from .errors import DataError, OnnxGuardError
from .model import LoadedModel, load_model
from .oracle import Domain, Oracle
from .policy import CheckSpec, LoadedPolicy, load_policy
from .report import (
    DataInfo,
    Environment,
    EvasionCheck,
    FileDigest,
    ModelInfo,
    NotTested,
    PolicyInfo,
    Quantity,
    QueryStats,
    RangeInfo,
    Rate,
    Report,
    TensorInfo,
    Timing,
    ToolInfo,
    CurvePoint,
)

ProgressFactory = Callable[[str, int], Callable[[int, int], None]]


@dataclass
class ScanOptions:
    model_path: Path
    data_path: Path | None = None
    value_range: tuple[float, float] | None = None
    policy: LoadedPolicy | None = None
    seed: int = 0
    budget: int | None = None  # overrides every check's per-sample budget
    samples: int | None = None  # overrides every check's sample count
    save_adversarials: Path | None = None
    target: int | None = None
    extra_notes: list[str] = field(default_factory=list)


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


def environment() -> Environment:
    import onnx
    import onnxruntime

    return Environment(
        python=sys.version.split()[0],
        platform=platform.platform(),
        onnxguard=__version__,
        onnxruntime=onnxruntime.__version__,
        onnx=onnx.__version__,
        numpy=np.__version__,
        execution_provider="CPUExecutionProvider",
    )


def prepare(opts: ScanOptions, policy: LoadedPolicy, rng: np.random.Generator, n_needed: int, raw: object = None) -> Prepared:
    samples = load_data(opts.data_path) if opts.data_path else None
    model = load_model(
        opts.model_path,
        probe=samples.x if samples is not None and samples.x.ndim > 1 else None,
        max_bytes=policy.policy.limits.max_model_mb * 1024 * 1024,
        raw=raw,
    )
    value_range = opts.value_range or policy.policy.threat_model.range
    if samples is not None:
        samples = fit_to_model(samples, model)
    domain, dsrc = resolve_domain(model, samples, value_range)
    if opts.value_range is None and value_range is not None:
        dsrc = "policy"
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
    budget: int | None = None,
    samples: int | None = None,
    target: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    save_dir: Path | None = None,
) -> EvasionCheck:
    """Run one policy check: the attack at each epsilon (ascending), clean accuracy, the figures."""
    attack = ATTACKS.get(spec.attack)
    if attack is None:
        return _not_run(spec, threat, f"attack '{spec.attack}' is not available in onnxguard {__version__}", seed)
    if attack.needs_scores and threat == "labels":
        why = "the model outputs labels only" if not prep.model.has_scores else "the policy's threat model is labels-only"
        return _not_run(spec, threat, f"{spec.attack} needs scores and {why}", seed)
    rng = np.random.default_rng([seed, _stable_hash(spec.check_id)])
    n_budget = budget or spec.budget
    sel = _pick(len(prep.z), samples or spec.samples, rng)
    y = prep.y[sel]
    correct = prep.pred[sel] == y
    tgt_class = target if target is not None else spec.target
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
    broken_at = np.full(n, np.inf)  # smallest epsilon of the list at which the sample broke
    z_adv = z.copy()
    queries = np.zeros(n, dtype=np.int64)
    pert = np.full(n, np.nan)
    wall = ort = 0.0
    total_steps = len(eps_list)
    for k, eps in enumerate(eps_list):
        todo = np.flatnonzero(~np.isfinite(broken_at))
        if todo.size == 0:
            break
        oracle = Oracle(prep.model, prep.domain, n_samples=todo.size, budget=n_budget, labels_only=(threat == "labels"))
        sub_progress = None
        if progress is not None:
            def sub_progress(done: int, total: int, _k: int = k) -> None:
                progress(_k * 1000 + int(1000 * done / max(total, 1)), total_steps * 1000)
        res: AttackResult = attack.fn(
            oracle, z[todo], ya[todo], norm=spec.norm, epsilon=eps, budget=n_budget, rng=rng,
            target=None if ta is None else ta[todo], progress=sub_progress,
        )
        if oracle.budget is not None and (oracle.queries > oracle.budget).any():
            raise OnnxGuardError("internal: an attack exceeded its query budget")
        queries[todo] += res.queries
        hit = todo[res.success]
        broken_at[hit] = eps
        z_adv[hit] = res.z_adv[res.success]
        pert[hit] = res.perturbation[res.success]
        wall += res.wall_time
        ort += res.ort_time

    curve = []
    for eps in eps_list:
        s = int((broken_at <= eps).sum())
        curve.append(CurvePoint(epsilon=eps, success_rate=Rate.of(s, n), robust_accuracy=Rate.of(n - s, int(len(sel)))))
    succ = np.isfinite(broken_at)
    rate = Rate.of(int(succ.sum()), n)
    eps_max = max(eps_list)
    budget_note = f"{n_budget} queries per sample" + (" per epsilon" if len(eps_list) > 1 else "")
    if n == 0:
        finding = "no correctly classified sample to attack"
    elif succ.sum() == 0:
        finding = f"no adversarial example found for any of {n} samples within {budget_note} at epsilon {eps_max:g} ({spec.norm}); this is not a proof of robustness"
    else:
        finding = f"adversarial examples found for {int(succ.sum())} of {n} correctly classified samples at epsilon <= {eps_max:g} ({spec.norm}); not found within {budget_note} for the other {n - int(succ.sum())}"
    saved = None
    if save_dir is not None and n:
        save_dir.mkdir(parents=True, exist_ok=True)
        path = save_dir / f"{spec.check_id}.npz"
        np.savez_compressed(
            path, x=prep.domain.from_unit(z), x_adv=prep.domain.from_unit(z_adv), y=ya, success=succ,
            broken_at=broken_at, **({"target": ta} if ta is not None else {}),
        )
        saved = str(path)
    return EvasionCheck(
        id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=eps_max, epsilons=eps_list,
        threat_model=threat,  # type: ignore[arg-type]
        targeted=targeted, target=tgt_class, status="completed", n_samples=int(len(sel)), n_attacked=n,
        clean_accuracy=clean_acc, success_rate=rate, finding=finding,
        queries=QueryStats.of(queries, n_budget),
        perturbation=Quantity.of(pert[succ]) if succ.any() else None,
        robustness_curve=curve if len(eps_list) > 1 else [], seed=seed,
        wall_time_s=wall, ort_time_s=ort, adversarials=saved,
    )


def _stable_hash(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def model_info(model: LoadedModel, display_path: str | None = None) -> ModelInfo:
    return ModelInfo(
        path=display_path or str(model.path),
        sha256=model.sha256,
        size_bytes=model.size_bytes,
        opset=model.opset,
        ir_version=model.ir_version,
        producer=model.producer,
        inputs=[TensorInfo(**t.as_dict()) for t in model.inputs],
        outputs=[TensorInfo(**t.as_dict()) for t in model.outputs],
        output_kind=model.output_kind,
        n_classes=model.n_classes,
        sample_shape=list(model.sample_shape),
        external_data=[FileDigest(path=p, sha256=h, size_bytes=s) for p, h, s in model.external_files],
    )


def _range_value(a: np.ndarray) -> float | list[float]:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return float(a[0]) if np.all(a == a[0]) else [float(v) for v in a]


def inspect_file(opts: ScanOptions, policy: LoadedPolicy) -> tuple[object, list]:
    """Read the model safely and run the static checks; refuse models that must not run (exit 2)."""
    from . import safeload
    from .errors import ModelLoadError
    from .static import esc, inspect_model, refusals

    lim = policy.policy.limits
    raw = safeload.read_model(opts.model_path, max_bytes=lim.max_model_mb * 1024 * 1024)
    findings = inspect_model(raw, opts.model_path, memory_limit=lim.max_memory_mb * 1024 * 1024)
    refused = refusals(findings)
    if refused:
        raise ModelLoadError(f"{esc(opts.model_path.name, 200)} refused before running: " + "; ".join(f.detail for f in refused[:3]))
    return raw, findings


def run_scan(
    opts: ScanOptions, progress: ProgressFactory | None = None, *, on_static: Callable[[object, list], None] | None = None
) -> Report:
    """Scan a model in this process and return the graded report.

    Static checks run first; ``on_static(raw_model, findings)`` hears of them before the model runs."""
    t0 = time.perf_counter()
    policy = opts.policy or load_policy(None)
    pol = policy.policy
    rng = np.random.default_rng(opts.seed)
    n_needed = max([opts.samples or c.samples for c in pol.checks] + [pol.backdoor.samples_per_class * 10 if pol.backdoor.enabled else 0])
    raw, static_findings = inspect_file(opts, policy)
    if on_static is not None:
        on_static(raw, static_findings)
    prep = prepare(opts, policy, rng, n_needed, raw=raw)
    model = prep.model
    threat = "labels" if (pol.threat_model.access == "labels" or not model.has_scores) else "scores"

    notes = list(opts.extra_notes)
    not_tested: list[NotTested] = []
    if prep.samples.synthetic:
        notes.append("evidence is synthetic: no --data was given, so inputs were drawn uniformly from the valid range and the model's own predictions are the reference labels")
    if not prep.labels_given:
        notes.append("no labels supplied: the model's own predictions are the reference, so clean accuracy is not measured")
    if not model.has_scores:
        notes.append("the model outputs labels only: score-based attacks do not apply")

    checks: list[EvasionCheck] = []
    for spec in pol.checks:
        cb = progress(spec.check_id, len(spec.epsilons) * 1000) if progress else None
        chk = run_evasion_check(
            prep, spec, threat=threat, seed=opts.seed, budget=opts.budget, samples=opts.samples,
            target=opts.target, progress=cb, save_dir=opts.save_adversarials,
        )
        checks.append(chk)
        if chk.status != "completed":
            not_tested.append(NotTested(what=f"check {chk.id}", reason=chk.reason or "not run"))

    report = Report(
        tool=ToolInfo(version=__version__),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        model=model_info(model, str(opts.model_path)),
        data=DataInfo(
            source=prep.samples.source if not prep.samples.synthetic else "synthetic",
            sha256=prep.samples.sha256,
            n_samples=int(len(prep.z)),
            synthetic=prep.samples.synthetic,
            labels="given" if prep.labels_given else "model_predictions",
            value_range=RangeInfo(source=prep.domain_source, lo=_range_value(prep.domain.lo), hi=_range_value(prep.domain.hi)),  # type: ignore[arg-type]
        ),
        seed=opts.seed,
        environment=environment(),
        policy=PolicyInfo(name=pol.name, version=pol.version, sha256=policy.sha256, source=policy.source),
        clean_accuracy=Rate.of(int((prep.pred == prep.y).sum()), len(prep.y)) if prep.labels_given else None,
        checks=checks,
        static_findings=static_findings,
        not_tested=not_tested,
        notes=notes,
    )
    from .grading import grade_report

    grade_report(report, policy)
    wall = time.perf_counter() - t0
    ort = prep.clean_ort_time + sum(c.ort_time_s for c in checks) + (report.backdoor.details.get("ort_time_s", 0.0) if report.backdoor else 0.0)
    q_total = prep.clean_queries + sum(c.queries.total for c in checks if c.queries) + (report.backdoor.queries if report.backdoor else 0)
    report.timing = Timing(wall_s=wall, ort_s=ort, ort_share=ort / wall if wall > 0 else None, queries_total=q_total)
    return report

"""One pass through the scanner: load, inspect, data, oracle, checks, grade, report.

Data flows one way; each stage returns a value object. ``run_scan`` is the
in-process library entry point; ``onnxguard.sandbox.scan_isolated`` runs the
same thing in a resource-limited child process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .assemble import scan_report
from .errors import InferenceTimeout
from .evasion import _not_run, inspect_file, prepare, protected_inputs, run_evasion_check
from .options import ProgressFactory, ScanOptions
from .outputs import as_output_dir
from .policy import CheckSpec, apply_overrides, load_policy
from .report import BackdoorSection, EvasionCheck, NotTested, Report
from .text import sanitize

__all__ = ["ScanOptions", "inspect_file", "run_attack", "run_scan"]


def run_attack(
    opts: ScanOptions, spec: CheckSpec, *, labels_only: bool = False, progress: ProgressFactory | None = None
) -> EvasionCheck:
    """One check run ad hoc (``onnxguard attack``): the same safe read, static refusals and watchdog as a scan."""
    policy = opts.policy or load_policy(None)
    raw, _ = inspect_file(opts, policy)
    prep = prepare(opts, policy, np.random.default_rng(opts.seed), spec.samples, raw=raw)
    threat = "labels" if labels_only or not prep.model.has_scores else "scores"
    cb = progress(spec.check_id, 1000) if progress else None
    return run_evasion_check(prep, spec, threat=threat, seed=opts.seed, progress=cb, save_dir=opts.save_adversarials)


def _shown_path(raw: object, given: Path) -> str:
    """The path a report names: the file actually read (a followed symlink's target)."""
    link, path = getattr(raw, "link", None), getattr(raw, "path", None)
    return str(path) if link is not None and path is not None else str(given)


def _failure_reason(exc: BaseException) -> str:
    """What a check that crashed says about it (the error's message, typed errors as they are)."""
    from .errors import OnnxGuardError

    if isinstance(exc, MemoryError):
        return "the check ran out of memory (MemoryError) and was stopped; the other checks kept their figures"
    if isinstance(exc, OnnxGuardError):
        return f"the check failed: {str(exc)[:300]}"
    return f"the check crashed ({type(exc).__name__}: {str(exc)[:300]}); the other checks kept their figures"


def _failed_check(spec: CheckSpec, threat: str, seed: int, reason: str) -> EvasionCheck:
    return EvasionCheck(
        id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=max(spec.epsilons), epsilons=spec.epsilons,
        threat_model=threat, targeted=spec.targeted, target=spec.target, status="failed", reason=reason, seed=seed,  # type: ignore[arg-type]
    )


def run_scan(
    opts: ScanOptions, progress: ProgressFactory | None = None, *, on_static: Callable[[object, list], None] | None = None,
    on_check: Callable[[EvasionCheck], None] | None = None,
) -> Report:
    """Scan a model in this process and return the graded report.

    Static checks run first; ``on_static(raw_model, findings)`` hears of them before the model runs.
    Each check runs guarded: one that crashes (an exception, ``MemoryError``) becomes a ``failed`` check
    with the reason, graded by the policy's ``not_run`` rule, and the others keep their figures; one whose
    model run the watchdog stopped is ``not_run``. ``on_check(check)`` hears of every check as soon as it
    is done (the sandbox streams it to the parent)."""
    t0 = time.perf_counter()
    policy = apply_overrides(opts.policy or load_policy(None), budget=opts.budget, samples=opts.samples, target=opts.target,
                             value_range=opts.value_range)
    pol = policy.policy
    rng = np.random.default_rng(opts.seed)
    n_needed = max([c.samples for c in pol.checks] + [pol.backdoor.samples_per_class * 10 if pol.backdoor.enabled else 0])
    raw, static_findings = inspect_file(opts, policy)
    if on_static is not None:
        on_static(raw, static_findings)
    from .errors import CannotRunError, NotAClassifierError
    from .taskscan import classic_classifier, scan_by_task

    if not classic_classifier(raw):  # text, regressor, several inputs, other: scanned by its task
        return scan_by_task(opts, policy, raw, static_findings, first_error=None, progress=progress, started=t0)
    try:
        prep = prepare(opts, policy, rng, n_needed, raw=raw)
    except (NotAClassifierError, CannotRunError) as exc:  # dynamic axes without data, a model that cannot run, ...
        return scan_by_task(opts, policy, raw, static_findings, first_error=exc, progress=progress, started=t0)
    model = prep.model
    threat = "labels" if (pol.threat_model.access == "labels" or not model.has_scores) else "scores"

    notes = list(opts.extra_notes)
    if getattr(raw, "link", None) is not None:
        notes.append(f"the model path {sanitize(str(raw.link), 300)} is a symbolic link; with --follow-symlinks its target "  # type: ignore[attr-defined]
                     f"{sanitize(str(raw.path), 300)} was scanned, and external data was confined to the target's folder")  # type: ignore[attr-defined]
    not_tested: list[NotTested] = []
    if prep.samples.synthetic:
        notes.append("evidence is synthetic: no --data was given, so inputs were drawn uniformly from the valid range and the model's own predictions are the reference labels")
    if not prep.labels_given:
        notes.append("no labels supplied: the model's own predictions are the reference, so clean accuracy is not measured")
    if not model.has_scores:
        notes.append("the model outputs labels only: score-based attacks do not apply")
    ri = prep.inputs
    if ri is not None and ri.degenerate:
        shown = ", ".join(map(str, ri.degenerate[:20])) + (" ..." if len(ri.degenerate) > 20 else "")
        notes.append(f"{len(ri.degenerate)} feature(s) have a valid range of width 0 (constant in the data: {shown}); no attack can move "
                     "them. Give their real bounds with --bounds or the policy's threat_model.bounds")
    if ri is not None and (ri.layout_source == "assumed" or ri.shape_source == "assumed"):
        what = [f"layout {ri.layout}"] if ri.layout_source == "assumed" else []
        what += [f"sample shape {list(model.sample_shape)}"] if ri.shape_source == "assumed" else []
        notes.append(f"assumed {' and '.join(what)}: pass --layout / --input-shape (or --data) if that is wrong")

    from .taskscan import split_for_classifier

    specs, not_applicable = split_for_classifier(pol.checks)
    checks: list[EvasionCheck] = []
    only = set(opts.only_checks) if opts.only_checks is not None else None
    deadline = time.monotonic() + pol.limits.scan_time_s if pol.limits.scan_time_s else None
    for spec in specs:
        if only is not None and spec.check_id not in only:
            continue
        if deadline is not None and time.monotonic() >= deadline:
            chk = _not_run(spec, threat, f"not run: the scan's time budget (limits.scan_time_s = {pol.limits.scan_time_s:g} s) was spent before this check", opts.seed)
            checks.append(chk)
            not_tested.append(NotTested(what=f"check {chk.id}", reason=chk.reason or "not run"))
            if on_check is not None:
                on_check(chk)
            continue
        cb = progress(spec.check_id, 1000) if progress else None
        try:
            chk = run_evasion_check(
                prep, spec, threat=threat, seed=opts.seed, progress=cb, save_dir=opts.save_adversarials,
                thresholds=spec.success_rate or pol.grading.attack_success_rate, deadline=deadline,
            )
        except InferenceTimeout as exc:  # the watchdog stopped one model run: this check has no figures
            chk = _not_run(spec, threat, str(exc), opts.seed)
            notes.append(f"check {spec.check_id}: {exc}")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - one check's crash must not lose the others' figures
            chk = _failed_check(spec, threat, opts.seed, _failure_reason(exc))
        checks.append(chk)
        if on_check is not None:
            on_check(chk)
        if chk.status != "completed":
            not_tested.append(NotTested(what=f"check {chk.id}", reason=chk.reason or "not run"))

    transfers = []
    if opts.transfer_from is not None:
        from .transfer import run_transfers

        transfers = run_transfers(prep, opts.transfer_from, specs, seed=opts.seed, policy=policy, progress=progress)
    backdoor = None
    if pol.backdoor.enabled and (only is None or "backdoor" in only):
        from .backdoor import search_backdoors

        cb = progress("backdoor", pol.backdoor.budget) if progress else None
        out_dir = as_output_dir(opts.backdoor_out, "--backdoor-out", protected_inputs(prep))
        try:
            backdoor = search_backdoors(prep, pol.backdoor, threat=threat, seed=opts.seed, progress=cb, out_dir=out_dir)  # type: ignore[arg-type]
        except InferenceTimeout as exc:
            backdoor = BackdoorSection(status="not_run", reason=str(exc))
            notes.append(f"backdoor search: {exc}")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001
            backdoor = BackdoorSection(status="failed", reason=_failure_reason(exc).replace("the check", "the backdoor search"), threat_model=threat)  # type: ignore[arg-type]
        if backdoor.status != "completed":
            not_tested.append(NotTested(what="backdoor search", reason=backdoor.reason or backdoor.status))

    return scan_report(opts, policy, prep, checks=checks, transfers=transfers, backdoor=backdoor, static_findings=static_findings,
                       not_tested=not_tested, notes=notes, started=t0, model_path=_shown_path(raw, opts.model_path),
                       not_applicable=not_applicable)

"""Evasion checks: the samples every check shares (``prepare``) and one policy check run over its epsilons.

``prepare`` loads the model and the data, resolves the valid range and takes the
clean pass; ``run_evasion_check`` runs one ``[[checks]]`` entry (see
``onnxguard.curve``) and returns its ``EvasionCheck`` figures, ungraded.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .attacks import ATTACKS, labels_only_attack
from .curve import CurveRun, attack_over_epsilons
from .data import ResolvedInput, Samples, fit_to_model, labels_for, load_bounds, load_data, resolve_input, synthetic_samples
from .errors import DataError, TimeBudgetExhausted
from .model import LoadedModel, load_model
from .options import ScanOptions
from .outputs import Protected, as_output_dir
from .oracle import Domain, Oracle
from .policy import CheckSpec, LoadedPolicy, Thresholds
from .report import CurvePoint, EvasionCheck, QueryStats, Quantity, sequential_rate
from .stats import look_schedule, sequential_interval


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
    inputs: ResolvedInput | None = None  # layout, channels, normalisation and where each came from
    work_bytes: int | None = None  # attacks' per-step working memory, from the policy's memory limit

    @property
    def layout(self) -> str | None:
        return self.inputs.layout if self.inputs is not None and self.inputs.layout in ("NCHW", "NHWC") else None


def prepare(opts: ScanOptions, policy: LoadedPolicy, rng: np.random.Generator, n_needed: int, raw: object = None) -> Prepared:
    samples = load_data(opts.data_path) if opts.data_path else None
    model = load_model(
        opts.model_path,
        probe=samples.x if samples is not None and samples.x.ndim > 1 else None,
        sample_shape=tuple(opts.input_shape) if opts.input_shape else None,
        max_bytes=policy.policy.limits.max_model_mb * 1024 * 1024,
        raw=raw,
        inference_timeout_s=policy.policy.limits.inference_timeout_s,
        provider=opts.provider,
        intra_op_threads=int(opts.threads or 0),
    )
    tm = policy.policy.threat_model
    value_range = opts.value_range or (tuple(tuple(p) for p in tm.range) if isinstance(tm.range, list) else tm.range)
    if samples is not None:
        samples = fit_to_model(samples, model)
    bounds = None
    bsrc = "bounds"
    if opts.bounds_path is not None:
        bounds = load_bounds(opts.bounds_path, model.n_features)
    elif tm.bounds is not None:
        bounds = (np.array([b[0] for b in tm.bounds], dtype=np.float64), np.array([b[1] for b in tm.bounds], dtype=np.float64))
        bsrc = "policy"
    # --range reaches the policy as a recorded deviation (policy.apply_overrides); it is then the user's range
    range_given = opts.value_range is not None or any(d.key == "threat_model.range" for d in policy.deviations)
    resolved = resolve_input(
        model, samples, value_range, range_source="given" if range_given else "policy",
        layout=opts.layout, normalize=opts.normalize if not range_given else None, channels=opts.channels,
        bounds=bounds, bounds_source=bsrc,
    )
    domain, dsrc = resolved.domain, resolved.range_source
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
    # a sixteenth of the sandbox's memory limit for an attack's per-step temporaries (32 MB to 512 MB)
    work = int(min(512, max(32, policy.policy.limits.max_memory_mb // 16))) * 1024**2
    return Prepared(model, samples, domain, dsrc, z, y, pred, y_given is not None, int(clean.queries.sum()), clean.ort_time, resolved, work)


def _pick(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples in a random order: any prefix (a check stopped early or out of time) is an unbiased sample."""
    return rng.permutation(n_total)[: min(n, n_total)]


def grade_settled(successes: int, n: int, looks: int, thresholds: Thresholds, confidence: float = 0.95) -> tuple[bool, float, float]:
    """The sequential stopping rule: the anytime-valid interval of the success rate, and whether both of
    its ends fall in the same risk band of ``thresholds`` (so more samples cannot change the grade)."""
    lo, hi = sequential_interval(successes, n, looks, confidence)
    return bool(n > 0 and thresholds.level(lo) == thresholds.level(hi)), lo, hi


def _peak_rss_mb() -> float | None:
    try:
        import resource
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(r) / (1024**2 if sys.platform == "darwin" else 1024)
    except (ImportError, OSError):
        return None


def _merge(runs: list[CurveRun], z_shape: tuple[int, ...]) -> CurveRun:
    if not runs:
        return CurveRun(np.zeros(0), np.zeros((0, *z_shape)), np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    if len(runs) == 1:
        return runs[0]
    return CurveRun(
        found=np.concatenate([r.found for r in runs]), z_adv=np.concatenate([r.z_adv for r in runs]),
        queries=np.concatenate([r.queries for r in runs]), runs=np.concatenate([r.runs for r in runs]),
        grid=runs[0].grid, wall_time=sum(r.wall_time for r in runs), ort_time=sum(r.ort_time for r in runs), extra=dict(runs[0].extra),
    )


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
    thresholds: Thresholds | None = None,
    deadline: float | None = None,
) -> EvasionCheck:
    """Run one policy check over its epsilons (see ``onnxguard.curve``), clean accuracy, the figures.

    Under a labels-only threat model (or for a model that outputs labels only) a
    score-based L2 / L-infinity check runs HopSkipJump in its place, with the
    check's id, norm, epsilons, samples and budget, and says so in its finding;
    a score-based L0 check is not run (there is no labels-only L0 attack here).
    ``collect``, when given, receives ``(sample indices, labels, targets, CurveRun)``.

    Samples are attacked in a random order, in the groups between the check's pre-registered looks
    (``spec.looks``). After each look the check stops when its grade can no longer change: with
    ``thresholds`` (the ones that grade its success rate) and ``spec.early_stop``, once both ends of
    the anytime-valid interval (``stats.sequential_interval``) fall in the same risk band. It also stops
    when its own ``spec.time_limit_s`` or the scan's ``deadline`` (``time.monotonic()``) has passed; the
    figures then cover the samples that finished, with the real n, and the check says why it stopped."""
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
    sel_all = _pick(len(prep.z), spec.samples, rng)
    n_planned = int(len(sel_all))
    tgt_class = spec.target
    targeted = spec.targeted or tgt_class is not None
    y_all = prep.y[sel_all]
    targets_full = pick_targets(y_all, prep.model.n_classes, tgt_class, rng) if targeted else None
    eps_list = spec.epsilons
    want_min = spec.min_perturbation if min_perturbation is None else min_perturbation
    opts: dict = {}
    if "starts" in attack.options:
        opts["starts"] = (prep.z, prep.pred)  # the other samples, whose labels the clean pass already knows

    t_start = time.monotonic()
    hard_stop = min([t for t in (t_start + spec.time_limit_s if spec.time_limit_s is not None else None, deadline) if t is not None], default=None)

    made: list[Oracle] = []  # this chunk's oracles: what a dropped chunk spent is still counted

    def oracle_for(rows: np.ndarray) -> Callable[[np.ndarray, int], Oracle]:
        """Oracles for one group of samples (``rows``: their indices in the prepared samples, for inputs held fixed)."""

        def make_oracle(part: np.ndarray, b: int) -> Oracle:
            o = Oracle(prep.model, prep.domain, n_samples=len(part), budget=b, labels_only=(threat == "labels"), layout=prep.layout,
                       work_bytes=prep.work_bytes, rows=rows[part], deadline=hard_stop)
            made.append(o)
            return o

        return make_oracle

    dropped_q, dropped_ort = 0, 0.0

    looks = look_schedule(n_planned, spec.looks) if n_planned else [0]
    k_looks = len(looks)
    pieces: list[CurveRun] = []
    stopped = None
    time_look = False  # a time budget stopped the check between two pre-registered looks
    done_to = 0
    eps_max = max(eps_list)
    for li, stop_at in enumerate(looks):
        if li > 0 or deadline is not None:
            now = time.monotonic()
            if spec.time_limit_s is not None and now - t_start >= spec.time_limit_s:
                stopped = f"its time budget of {spec.time_limit_s:g} s was spent after {done_to} of {n_planned} samples"
            elif deadline is not None and now >= deadline:
                stopped = f"the scan's time budget was spent after {done_to} of {n_planned} samples"
            if stopped:
                break
        # a look's group is attacked in sub-chunks small enough that a time budget can stop between them
        limit_left = min([x for x in (
            (spec.time_limit_s - (time.monotonic() - t_start)) if spec.time_limit_s is not None else None,
            (deadline - time.monotonic()) if deadline is not None else None,
        ) if x is not None], default=None)
        step = stop_at - done_to
        if limit_left is not None and prep.clean_queries:
            per_sample_s = n_budget * 1.5 * prep.clean_ort_time / max(prep.clean_queries, 1)  # from the clean pass only
            fit = int((limit_left / 8) // max(per_sample_s, 1e-9))
            # 4 samples at a time keep batches efficient, unless 4 would not fit in half of the time left
            floor = 4 if 4 * per_sample_s <= limit_left / 2 else 1
            step = int(max(min(step, floor), min(step, fit)))
        pos = done_to
        while pos < stop_at:
            end = min(pos + step, stop_at)
            if pos > done_to and (
                (spec.time_limit_s is not None and time.monotonic() - t_start >= spec.time_limit_s)
                or (deadline is not None and time.monotonic() >= deadline)
            ):
                what = f"its time budget of {spec.time_limit_s:g} s" if spec.time_limit_s is not None and time.monotonic() - t_start >= spec.time_limit_s else "the scan's time budget"
                stopped = f"{what} was spent after {pos} of {n_planned} samples (between looks: counted as one extra look)"
                time_look = True
                break
            grp = slice(pos, end)
            yg = y_all[grp]
            tg = targets_full[grp] if targets_full is not None else None
            ok = (prep.pred[sel_all[grp]] == yg) & (tg != yg if tg is not None else True)
            if ok.any():
                cb = None
                if progress is not None:

                    def cb(d: int, t: int, base_done: int = pos, size: int = end - pos) -> None:
                        progress(int((base_done + size * d / max(t, 1)) * 1000 / max(n_planned, 1)), 1000)

                made.clear()
                try:
                    pieces.append(attack_over_epsilons(
                        attack, oracle_for(sel_all[grp][ok]), prep.z[sel_all[grp]][ok], yg[ok], tg[ok] if tg is not None else None, eps_list,
                        norm=spec.norm, budget=n_budget, rng=rng, minimise=want_min, progress=cb, opts=opts,
                    ))
                except TimeBudgetExhausted:
                    dropped_q += int(sum(int(o.queries.sum()) for o in made))
                    dropped_ort += float(sum(o.ort_time for o in made))
                    # the samples in flight were fixed before the attack began: dropping all of them keeps the
                    # finished ones an unbiased sample
                    what = f"its time budget of {spec.time_limit_s:g} s" if spec.time_limit_s is not None and time.monotonic() - t_start >= spec.time_limit_s else "the scan's time budget"
                    stopped = (f"{what} ran out while samples {pos + 1}-{end} were being attacked; they are dropped and the figures "
                               f"cover the {pos} of {n_planned} samples that finished (counted as one extra look)")
                    time_look = pos > done_to or pos not in looks
                    break
            pos = end
        if stopped:
            done_to = pos
            break
        done_to = stop_at
        if li == k_looks - 1:
            break
        if spec.early_stop and thresholds is not None and k_looks > 1:
            part = _merge(pieces, prep.z.shape[1:])
            n_now = int(part.found.size)
            s_now = int(part.broken_at(eps_max).sum()) if n_now else 0
            settled, lo, hi = grade_settled(s_now, n_now, k_looks, thresholds)
            if settled:
                stopped = (f"stopped early after {done_to} of {n_planned} samples (look {li + 1} of {k_looks}): the success rate's "
                           f"anytime-valid 95% interval [{lo:.3f}, {hi:.3f}] lies inside one risk band ({thresholds.level(hi)}), "
                           "so more samples cannot change the grade")
                break
    if stopped and done_to == 0:
        chk0 = _not_run(spec, threat, f"not run: {stopped}" + (f"; {dropped_q} queries were spent on the dropped samples" if dropped_q else ""), seed)
        chk0.queries_dropped, chk0.ort_time_s, chk0.n_planned = dropped_q, dropped_ort, n_planned
        chk0.wall_time_s = time.monotonic() - t_start
        return chk0
    sel = sel_all[:done_to]
    y = y_all[:done_to]
    targets_all = targets_full[:done_to] if targets_full is not None else None
    correct = prep.pred[sel] == y
    attackable = correct & (targets_all != y if targets_all is not None else True)
    idx = sel[attackable]
    z = prep.z[idx]
    ya = y[attackable]
    ta = targets_all[attackable] if targets_all is not None else None
    seq_looks = k_looks if (spec.early_stop and k_looks > 1) else 1
    if time_look:
        seq_looks += 1  # the time stop is one more look in the Bonferroni budget
    clean_acc = sequential_rate(int(correct.sum()), int(len(sel)), seq_looks)
    n = len(idx)
    run = _merge(pieces, prep.z.shape[1:])
    if collect is not None:
        collect.append((idx, ya, ta, run))
    succ = run.broken_at(eps_max)
    curve = []
    for eps in eps_list:
        s = int(run.broken_at(eps).sum())
        curve.append(CurvePoint(epsilon=eps, success_rate=sequential_rate(s, n, seq_looks),
                                robust_accuracy=sequential_rate(n - s, int(len(sel)), seq_looks)))
    rate = sequential_rate(int(succ.sum()), n, seq_looks)
    runs_note = "" if attack.minimisation else (f", shared by up to {int(run.runs.max())} runs over the epsilons" if n and run.runs.max() > 1 else "")
    budget_note = f"{n_budget} queries per sample in total" + runs_note
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
    if stopped:
        finding += f". The check {stopped if stopped.startswith('stopped') else 'stopped: ' + stopped}"
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
        # the whole check's time, the dropped samples' included (as their queries and onnxruntime time are)
        wall_time_s=max(run.wall_time, time.monotonic() - t_start), ort_time_s=run.ort_time + dropped_ort, adversarials=saved,
        n_planned=n_planned,
        sequential=(f"samples in a random order, {seq_looks} pre-registered looks at {looks} samples; Clopper-Pearson at "
                    f"1 - 0.05/{seq_looks} per look (Bonferroni), so every interval holds at 95% whichever look the check stops at"
                    if seq_looks > 1 else None),
        stopped_early=stopped, peak_rss_mb=_peak_rss_mb(), queries_dropped=dropped_q,
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

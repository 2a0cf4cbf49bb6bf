"""Scanning any valid model by its task: text classifiers, regressors, multi-input models, and the rest.

``run_scan`` comes here when the model is not a single-float-input classifier
(``load_model`` raised ``NotAClassifierError``) or cannot be run at all
(``CannotRunError``). The task is detected from the model's inputs and outputs
(``onnxguard.model.detect_task``), each input gets its space
(``onnxguard.inputs``), and every policy check is either

* run, when its attack fits the model's task and input spaces;
* ``not_run`` with the reason, when it would fit but cannot run (no data, the
  model could not be run, an "other" model whose outputs no attack reads),
  graded by the policy's ``grading.not_run`` rule;
* listed in ``not_applicable`` (not graded), when it is for another kind of model.

When no check of the policy fits the model, that gap is graded as not run too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .assemble import static_model_info, task_report
from .attacks import ATTACKS
from .errors import CannotRunError, DataError, InferenceTimeout, NotAClassifierError
from .model import TaskInfo, TensorSpec, detect_task
from .options import ProgressFactory, ScanOptions
from .policy import CheckSpec, LoadedPolicy
from .report import BackdoorSection, DataInfo, EvasionCheck, InputSpaceInfo, ModelInfo, NotTested, Rate, RangeInfo, Report
from .text import sanitize

TASK_WORDS = {"classifier": "classifier", "classifier-labels": "classifier (labels only)", "regressor": "regressor",
              "text-classifier": "text classifier", "other": "model"}


def _declared(raw: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    from .static import tensor_shape, type_str

    g = raw.proto.graph
    inits = {t.name for t in g.initializer}
    ins = [TensorSpec(i.name, type_str(i.type), tuple(tensor_shape(i.type)) if tensor_shape(i.type) is not None else None)
           for i in g.input if i.name not in inits]
    outs = [TensorSpec(o.name, type_str(o.type), tuple(tensor_shape(o.type)) if tensor_shape(o.type) is not None else None) for o in g.output]
    return ins, outs


def classic_classifier(raw: Any) -> bool:
    """One float input and outputs of a classifier: the scan's original path (``evasion.prepare``)."""
    from .model import _FLOAT_TYPES

    ins, outs = _declared(raw)
    return len(ins) == 1 and ins[0].type in _FLOAT_TYPES and detect_task(ins, outs, raw.proto).task in ("classifier", "classifier-labels")


def split_for_classifier(specs: list[CheckSpec]) -> tuple[list[CheckSpec], list[NotTested]]:
    """The checks of a single-float-input classifier (image / tabular), and those meant for other models."""
    run = [c for c in specs if _fits(c, "classifier", {"box"})]
    na = [NotTested(what=f"check {c.check_id}", reason=f"{c.attack} is for {'/'.join(ATTACKS[c.attack].tasks)} models; this is an image/tabular classifier")
          for c in specs if c not in run and c.attack in ATTACKS]
    return run, na


def _fits(spec: CheckSpec, task: str, spaces: set[str]) -> bool:
    a = ATTACKS.get(spec.attack)
    if a is None:
        return False
    t = "classifier" if task in ("classifier", "classifier-labels") else task
    return t in a.tasks and bool(set(a.spaces) & spaces)


def _would_fit(spec: CheckSpec, task: TaskInfo, spaces: set[str]) -> bool:
    """The checks meant for this kind of model, when they cannot run (graded as not run)."""
    a = ATTACKS.get(spec.attack)
    if a is None:
        return False
    if task.task == "regressor":
        return "regressor" in a.tasks
    if task.task == "text-classifier" or spaces & {"text", "tokens"}:
        return "text-classifier" in a.tasks and bool(set(a.spaces) & (spaces & {"text", "tokens"} or {"text"}))
    return "classifier" in a.tasks and "box" in a.spaces


def _not_run(spec: CheckSpec, reason: str, seed: int, threat: str) -> EvasionCheck:
    return EvasionCheck(id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=max(spec.epsilons), epsilons=spec.epsilons,
                        threat_model=threat, targeted=spec.targeted, target=spec.target, status="not_run", reason=reason, seed=seed)  # type: ignore[arg-type]


def _safe(name: str) -> str:
    return sanitize(name, limit=80)


def scan_by_task(
    opts: ScanOptions, policy: LoadedPolicy, raw: Any, static_findings: list, *, first_error: Exception | None,
    progress: ProgressFactory | None, started: float,
) -> Report:
    from .inputs import plan_inputs, spaces_of
    from .inputs.tokenizer import find_tokenizer, load_tokenizer

    pol = policy.policy
    ins, outs = _declared(raw)
    task = detect_task(ins, outs, raw.proto)
    if isinstance(first_error, NotAClassifierError) and "one float per sample" in str(first_error):
        task = TaskInfo("regressor", "regression", "the output is one float per sample on a probe batch (not a sigmoid)")
    threat = pol.threat_model.access
    tok_path = find_tokenizer(opts.model_path, opts.tokenizer_path) if task.task == "text-classifier" else None
    tokenizer = load_tokenizer(tok_path) if tok_path is not None else None
    roles = plan_inputs(ins, tokenizer=tokenizer is not None)
    spaces = spaces_of(roles)
    notes = list(opts.extra_notes)
    info = static_model_info(raw, str(opts.model_path))
    info.task, info.task_detail, info.task_reason = task.task, task.detail, sanitize(task.reason, limit=300)
    info.input_spaces = [InputSpaceInfo(name=_safe(r.name), type=r.type, shape=list(r.shape) if r.shape is not None else None,
                                        space=r.kind, detail=r.detail) for r in roles]  # type: ignore[arg-type]
    if tok_path is not None:
        from .digest import sha256_file
        from .report import FileDigest

        info.tokenizer = FileDigest(path=str(tok_path), sha256=sha256_file(tok_path), size_bytes=tok_path.stat().st_size)
    ctx = _Ctx(opts, policy, raw, static_findings, info, task, roles, spaces, threat, notes, progress, started)
    if isinstance(first_error, CannotRunError):
        return ctx.cannot_run(str(first_error))
    if isinstance(first_error, NotAClassifierError) and task.task in ("classifier", "classifier-labels") and len(ins) == 1:
        return ctx.nothing_runs(str(first_error), backdoor_why=str(first_error))
    if task.task == "other":
        return ctx.nothing_runs(f"the model is not a classifier or regressor ({task.detail}: {task.reason}); onnxguard has no attack "
                                f"for {task.detail} models", backdoor_why="backdoor search needs a classifier")
    if not ins:
        return ctx.nothing_runs("the model declares no inputs; there is nothing to attack", backdoor_why="the model has no inputs")
    try:
        if task.task == "text-classifier":
            return ctx.text(tokenizer)
        if "box" not in spaces:
            names = ", ".join(f"'{_safe(r.name)}' ({r.type})" for r in roles)
            return ctx.nothing_runs(f"the model has no float input to perturb and no text input: {names} are held fixed",
                                    backdoor_why="no input onnxguard can perturb")
        return ctx.box(regression=task.task == "regressor")
    except NotAClassifierError as exc:
        return ctx.nothing_runs(str(exc), backdoor_why=str(exc))
    except CannotRunError as exc:
        return ctx.cannot_run(str(exc))


class _Ctx:
    def __init__(self, opts: ScanOptions, policy: LoadedPolicy, raw: Any, static: list, info: ModelInfo, task: TaskInfo,
                 roles: list, spaces: set[str], threat: str, notes: list[str], progress: ProgressFactory | None, started: float) -> None:
        self.opts, self.policy, self.raw, self.static, self.info, self.task = opts, policy, raw, static, info, task
        self.roles, self.spaces, self.threat, self.notes, self.progress, self.started = roles, spaces, threat, notes, progress, started
        self.pol = policy.policy

    # -- checks sorted into run / not run / not applicable ---------------
    def split(self, fits: Callable[[CheckSpec], bool]) -> tuple[list[CheckSpec], list[NotTested]]:
        run, na = [], []
        for c in self.pol.checks:
            if fits(c):
                run.append(c)
            else:
                a = ATTACKS.get(c.attack)
                kinds = ", ".join(a.tasks) if a else "?"
                na.append(NotTested(what=f"check {c.check_id}", reason=f"{c.attack} is for {kinds} models with {'/'.join(a.spaces) if a else '?'} inputs; "
                                    f"this is a {TASK_WORDS.get(self.task.task, 'model')} ({'/'.join(sorted(self.spaces)) or 'no attackable'} inputs)"))
        return run, na

    def finish(self, checks: list[EvasionCheck], not_applicable: list[NotTested], *, backdoor: BackdoorSection | None,
               backdoor_applies: bool, data: DataInfo | None = None, clean: Rate | None = None, clean_q: int = 0, clean_ort: float = 0.0,
               model_ran: bool = True, extra_not_tested: list[NotTested] | None = None) -> Report:
        not_tested = [NotTested(what=f"check {c.id}", reason=c.reason or "not run") for c in checks if c.status != "completed"]
        if backdoor is not None and backdoor.status != "completed":
            not_tested.append(NotTested(what="backdoor search", reason=backdoor.reason or backdoor.status))
        if not backdoor_applies and self.pol.backdoor.enabled:
            not_applicable.append(NotTested(what="backdoor search", reason=f"backdoor search reverses class triggers; a {TASK_WORDS.get(self.task.task)} has no classes"))
        if not checks:
            not_tested.append(NotTested(what="evasion", graded=True,
                                        reason=f"no check of policy '{self.pol.name}' fits a {TASK_WORDS.get(self.task.task, 'model')} "
                                               f"({'/'.join(sorted(self.spaces)) or 'no attackable'} inputs)"))
        not_tested += extra_not_tested or []
        fixed = [r for r in self.roles if r.kind == "fixed"]
        if fixed:
            self.notes.append("inputs held fixed: " + "; ".join(f"'{_safe(r.name)}' ({r.detail})" for r in fixed))
        return task_report(self.opts, self.policy, model=self.info, data=data, checks=checks, backdoor=backdoor,
                           backdoor_applies=backdoor_applies, static_findings=self.static, not_tested=not_tested,
                           not_applicable=not_applicable, notes=self.notes, started=self.started, clean_accuracy=clean,
                           clean_queries=clean_q, clean_ort_s=clean_ort, model_ran=model_ran)

    def _meant(self) -> tuple[list[CheckSpec], list[NotTested]]:
        return self.split(lambda c: _would_fit(c, self.task, self.spaces))

    def nothing_runs(self, reason: str, *, backdoor_why: str) -> Report:
        """Checks meant for this kind of model are not run, with the reason; the rest do not apply."""
        meant, na = self._meant()
        checks = [_not_run(c, sanitize(reason, limit=400), self.opts.seed, self.threat) for c in meant]
        applies = self.task.task != "regressor" and self.pol.backdoor.enabled
        bd = BackdoorSection(status="not_run", reason=sanitize(backdoor_why, limit=300)) if applies else None
        return self.finish(checks, na, backdoor=bd, backdoor_applies=applies)

    def cannot_run(self, reason: str) -> Report:
        meant, na = self._meant()
        why = f"the model cannot be run: {sanitize(reason, limit=300)}"
        checks = [_not_run(c, why, self.opts.seed, self.threat) for c in meant]
        bd = BackdoorSection(status="not_run", reason=why) if self.pol.backdoor.enabled else None
        self.notes.append("static-only report: the model could not be run, so only the static checks of the file were made; "
                          "every check meant for it is not run and graded by the policy's not_run rule")
        extra = [] if checks else [NotTested(what="the model's behaviour", reason=why, graded=True)]
        return self.finish(checks, na, backdoor=bd, backdoor_applies=self.pol.backdoor.enabled, model_ran=False, extra_not_tested=extra)

    # -- float inputs: multi-input classifiers and regressors ------------
    def box(self, *, regression: bool) -> Report:
        from .data import labels_for, resolve_domain, synthetic_samples
        from .evasion import Prepared, run_evasion_check
        from .inputs.feed import load_feed_model
        from .oracle import Oracle

        opts, pol = self.opts, self.pol
        arrays, y_raw, src, sha = _box_data(opts.data_path, [r.name for r in self.roles])
        task = "regressor" if regression else "classifier"
        run_specs, na = self.split(lambda c: _fits(c, task, {"box"}))
        try:
            model, x = load_feed_model(opts.model_path, arrays=arrays, raw=self.raw, max_bytes=pol.limits.max_model_mb * 1024 * 1024,
                                       regression=regression, inference_timeout_s=pol.limits.inference_timeout_s)
        except NotAClassifierError as exc:
            return self.nothing_runs(str(exc), backdoor_why=str(exc))
        from .assemble import model_info

        mi = model_info(model, str(opts.model_path))
        for k in ("task", "task_detail", "task_reason", "input_spaces", "tokenizer"):
            setattr(mi, k, getattr(self.info, k))
        self.info = mi
        rng = np.random.default_rng(opts.seed)
        from .data import Samples

        samples = Samples(x=x, y=y_raw, source=src or "", sha256=sha, synthetic=False) if x is not None else None
        value_range = opts.value_range or pol.threat_model.range
        domain, dsrc = resolve_domain(model, samples, value_range)
        if samples is None:
            if not pol.threat_model.allow_synthetic:
                raise DataError(f"policy '{pol.name}' refuses synthetic evidence: pass --data with samples representative of the model's inputs")
            n_needed = max([c.samples for c in run_specs] + [8])
            samples = synthetic_samples(model, domain, n_needed, rng)
            self.notes.append("evidence is synthetic: no --data was given, so float inputs were drawn uniformly from the valid range")
        z = domain.to_unit(samples.x)
        clean = Oracle(model, domain, n_samples=len(z), budget=None)
        out = clean.query(z, np.arange(len(z)))
        y_given = None if regression or samples.y is None else labels_for(samples, model)
        pred = out.labels
        prep = Prepared(model, samples, domain, dsrc, z, y_given if y_given is not None else pred, pred, y_given is not None,
                        int(clean.queries.sum()), clean.ort_time)
        if not regression and not prep.labels_given:
            self.notes.append("no labels supplied: the model's own predictions are the reference, so clean accuracy is not measured")
        checks: list[EvasionCheck] = []
        values = None
        if regression:
            from .regression import clean_values, run_regression_check

            values = clean_values(prep)
        threat = "labels" if (self.threat == "labels" or not model.has_scores) else "scores"
        for spec in run_specs:
            cb = self.progress(spec.check_id, 1000) if self.progress else None
            try:
                if regression:
                    chk = run_regression_check(prep, spec, values=values, seed=opts.seed, progress=cb, save_dir=opts.save_adversarials)
                else:
                    chk = run_evasion_check(prep, spec, threat=threat, seed=opts.seed, progress=cb, save_dir=opts.save_adversarials)
            except InferenceTimeout as exc:  # the watchdog stopped one model run: this check has no figures
                chk = _not_run(spec, str(exc), opts.seed, threat)
            chk.space = "box"
            checks.append(chk)
        data = DataInfo(source="synthetic" if samples.synthetic else samples.source, sha256=samples.sha256, n_samples=len(z),
                        synthetic=samples.synthetic, labels="given" if prep.labels_given else "model_predictions",
                        value_range=RangeInfo(source=dsrc, lo=_rv(domain.lo), hi=_rv(domain.hi)))  # type: ignore[arg-type]
        bd = None
        applies = not regression and pol.backdoor.enabled
        if applies:
            bd = BackdoorSection(status="not_run", reason="backdoor search covers single-input classifiers; this model has "
                                 f"{len(self.roles)} inputs ({', '.join(_safe(r.name) for r in self.roles)})")
        clean_acc = Rate.of(int((prep.pred == prep.y).sum()), len(prep.y)) if prep.labels_given else None
        return self.finish(checks, na, backdoor=bd, backdoor_applies=applies, data=data, clean=clean_acc,
                           clean_q=prep.clean_queries, clean_ort=prep.clean_ort_time)

    # -- text ------------------------------------------------------------
    def text(self, tokenizer: Any) -> Report:
        from .nlp.check import prepare_text, run_text_check
        from .nlp.data import load_texts
        from .nlp.model import load_text_model

        opts, pol = self.opts, self.pol
        space = "text" if ("text" in self.spaces) else "tokens"
        run_specs, na = self.split(lambda c: _fits(c, "text-classifier", {space}))
        if opts.data_path is None:
            why = ("text checks need real texts: pass --data with a CSV (a 'text' column), JSONL or .npz of texts; "
                   "synthetic text would not be evidence")
            checks = [_not_run(c, why, opts.seed, self.threat) for c in run_specs]
            bd = BackdoorSection(status="not_run", reason="backdoor search covers image and tabular classifiers") if pol.backdoor.enabled else None
            return self.finish(checks, na, backdoor=bd, backdoor_applies=pol.backdoor.enabled)
        ts = load_texts(opts.data_path)
        if ts.texts is None and tokenizer is not None:
            raise DataError(f"{Path(opts.data_path).name} holds token ids; with a tokenizer, give the texts themselves")
        model = load_text_model(opts.model_path, raw=self.raw, max_bytes=pol.limits.max_model_mb * 1024 * 1024, tokenizer=tokenizer,
                                ids=ts.ids, fixed=ts.fixed, probe_texts=ts.texts[:16] if ts.texts else None,
                                inference_timeout_s=pol.limits.inference_timeout_s)
        from .assemble import model_info
        from .data import Samples, labels_for

        mi = model_info(model, str(opts.model_path))
        mi.sample_shape = None if model.mode != "ids" else list(model.sample_shape)
        for k in ("task", "task_detail", "task_reason", "input_spaces", "tokenizer"):
            setattr(mi, k, getattr(self.info, k))
        self.info = mi
        items: list[Any] = list(ts.texts) if ts.texts is not None else [row for row in np.asarray(ts.ids)]
        y_given = None
        if ts.y is not None:
            y_given = labels_for(Samples(x=np.zeros((len(ts.y), 1)), y=ts.y, source="", sha256=None, synthetic=False), model)
        prep = prepare_text(model, items, y_given, source=ts.source, sha256=ts.sha256)
        if not prep.labels_given:
            self.notes.append("no labels supplied: the model's own predictions are the reference, so clean accuracy is not measured")
        if model.mode == "ids":
            self.notes.append("no tokenizer: the model is attacked in token-id space (substituted ids, not edited text)")
        threat = "labels" if (self.threat == "labels" or not model.has_scores) else "scores"
        checks = []
        for spec in run_specs:
            cb = self.progress(spec.check_id, 1000) if self.progress else None
            try:
                checks.append(run_text_check(prep, spec, threat=threat, seed=opts.seed, progress=cb, save_dir=opts.save_adversarials))
            except InferenceTimeout as exc:  # the watchdog stopped one model run: this check has no figures
                checks.append(_not_run(spec, str(exc), opts.seed, threat))
        data = DataInfo(source=ts.source, sha256=ts.sha256, n_samples=len(items), synthetic=False,
                        labels="given" if prep.labels_given else "model_predictions", value_range=None)
        bd = BackdoorSection(status="not_run", reason="backdoor search covers image and tabular classifiers; not available for text classifiers") \
            if pol.backdoor.enabled else None
        clean_acc = Rate.of(int((prep.pred == prep.y).sum()), len(prep.y)) if prep.labels_given else None
        return self.finish(checks, na, backdoor=bd, backdoor_applies=pol.backdoor.enabled, data=data, clean=clean_acc,
                           clean_q=prep.clean_queries, clean_ort=prep.clean_ort_time)


def _rv(a: np.ndarray) -> float | list[float]:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return float(a[0]) if a.size and np.all(a == a[0]) else [float(v) for v in a]


def _box_data(path: Path | None, names: list[str]) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None, str | None, str | None]:
    """Data per input name: a .npz with one array per input (and optional y), or any single-input format."""
    if path is None:
        return None, None, None, None
    from .data import load_data
    from .digest import sha256_file

    p = Path(path)
    if p.suffix.lower() == ".npz" and len(names) > 1:
        import zipfile

        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                missing = [n for n in names if n not in keys]
                if missing:
                    raise DataError(f"{p.name} holds arrays {keys}; a model with inputs {names} needs one array per input (missing {missing})")
                arrays = {n: np.asarray(z[n]) for n in names}
                y = np.asarray(z["y"]).reshape(-1) if "y" in keys else None
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read {p.name} as npz: {str(exc)[:200]}") from None
        for n, a in arrays.items():
            if a.dtype.kind not in "fiub" or not np.isfinite(a.astype(np.float64)).all():
                raise DataError(f"{p.name}: array '{n}' must hold finite numbers")
        return arrays, y, str(p), sha256_file(p)
    s = load_data(p)
    return {names[0]: s.x}, s.y, s.source, s.sha256

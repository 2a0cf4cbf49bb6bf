"""The one place that builds reports: full scans, crashed scans and static-only reports.

Each builder fills in the figures and hands the report to ``onnxguard.grading``,
which alone decides levels and verdicts. ``environment()`` and the two
``ModelInfo`` builders (from a loaded session, or from the protobuf alone) live
here so that every kind of report describes the model and the tool the same way.

Nothing here imports numpy, onnx or onnxruntime at module level: the sandbox's
parent builds crash reports without loading them.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .grading import grade_failed_scan, grade_report
from .policy import LoadedPolicy, load_policy
from .report import (
    BackdoorSection,
    DataInfo,
    Environment,
    EvasionCheck,
    FileDigest,
    InputInfo,
    InputSpaceInfo,
    ModelInfo,
    NotTested,
    RangeInfo,
    Rate,
    Report,
    StaticFinding,
    TensorInfo,
    Timing,
    ToolInfo,
    TransferResult,
)

if TYPE_CHECKING:  # pragma: no cover
    from .evasion import Prepared
    from .model import LoadedModel
    from .options import ScanOptions
    from .safeload import RawModel


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment(execution_provider: str = "CPUExecutionProvider") -> Environment:
    """Versions of the interpreter and the libraries, read from package metadata (no import of onnxruntime)."""

    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return Environment(python=sys.version.split()[0], platform=platform.platform(), onnxguard=__version__,
                       onnxruntime=v("onnxruntime"), onnx=v("onnx"), numpy=v("numpy"), execution_provider=execution_provider)


def model_info(model: "LoadedModel", display_path: str | None = None) -> ModelInfo:
    """``ModelInfo`` of a model loaded in onnxruntime (task, classes and sample shape included)."""
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
        task="classifier" if model.has_scores else "classifier-labels",
        task_detail=model.output_kind,
        task_reason="one float input and per-class " + ("scores" if model.has_scores else "labels"),
        input_spaces=[InputSpaceInfo(name=t.name, type=t.type, shape=list(t.shape) if t.shape is not None else None, space="box",
                                     detail="continuous box in the valid range") for t in model.inputs],
    )


def static_model_info(raw: "RawModel", display_path: str) -> ModelInfo:
    """``ModelInfo`` from the protobuf alone, for models that never run (no onnxruntime)."""
    from .static import esc, tensor_shape, type_str
    from .text import as_str, sanitize

    p = raw.proto
    g = p.graph
    inits = {t.name for t in g.initializer}
    return ModelInfo(
        path=display_path, sha256=raw.sha256, size_bytes=raw.size_bytes,
        opset={esc(d.domain or "ai.onnx", 60): int(d.version) for d in p.opset_import},
        ir_version=int(p.ir_version),
        producer=sanitize(" ".join(as_str(x) for x in (p.producer_name, p.producer_version) if x), 200),
        inputs=[TensorInfo(name=esc(i.name, 200), type=type_str(i.type), shape=tensor_shape(i.type)) for i in g.input if i.name not in inits][:64],
        outputs=[TensorInfo(name=esc(o.name, 200), type=type_str(o.type), shape=tensor_shape(o.type)) for o in g.output][:64],
        external_data=[FileDigest(path=esc(loc, 200), sha256=sha, size_bytes=size) for loc, sha, size in raw.external_files],
    )


def _range_value(a: Any) -> float | list[float]:
    import numpy as np

    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return float(a[0]) if np.all(a == a[0]) else [float(v) for v in a]


def _input_info(prep: "Prepared") -> "InputInfo | None":
    ri = getattr(prep, "inputs", None)
    if ri is None:
        return None
    return InputInfo(layout=ri.layout, layout_source=ri.layout_source, channels=ri.channels, normalization=ri.normalization,  # type: ignore[arg-type]
                     sample_shape=list(prep.model.sample_shape), shape_source=ri.shape_source, degenerate_features=ri.degenerate)


def _domain_range(prep: "Prepared", a: Any) -> float | list[float]:
    """A range bound for the report: one number, one per channel (images), or one per feature (tabular)."""
    ri = getattr(prep, "inputs", None)
    if ri is not None and ri.layout in ("NCHW", "NHWC", "HW", "flat"):
        from .conventions import per_channel

        return per_channel(a, prep.model.sample_shape, ri.layout)
    return _range_value(a)


def scan_report(
    opts: "ScanOptions", policy: LoadedPolicy, prep: "Prepared", *, checks: list[EvasionCheck],
    transfers: list[tuple[TransferResult, int]], backdoor: BackdoorSection | None, static_findings: list[StaticFinding],
    not_tested: list[NotTested], notes: list[str], started: float, model_path: str | None = None,
    not_applicable: list[NotTested] | None = None,
) -> Report:
    """The graded report of a scan that ran: figures of every check, timing over the whole scan."""
    report = Report(
        tool=ToolInfo(version=__version__),
        created_at=now(),
        model=model_info(prep.model, model_path or str(opts.model_path)),
        data=DataInfo(
            source=prep.samples.source if not prep.samples.synthetic else "synthetic",
            sha256=prep.samples.sha256,
            n_samples=int(len(prep.z)),
            synthetic=prep.samples.synthetic,
            labels="given" if prep.labels_given else "model_predictions",
            value_range=RangeInfo(source=prep.domain_source, lo=_domain_range(prep, prep.domain.lo), hi=_domain_range(prep, prep.domain.hi)),  # type: ignore[arg-type]
            input=_input_info(prep),
        ),
        seed=opts.seed,
        environment=environment(getattr(prep.model, "provider", "CPUExecutionProvider")),
        policy=policy.info(),
        clean_accuracy=Rate.of(int((prep.pred == prep.y).sum()), len(prep.y)) if prep.labels_given else None,
        checks=checks,
        transfer=[t for t, _ in transfers],
        backdoor=backdoor,
        static_findings=static_findings,
        not_tested=not_tested,
        not_applicable=list(not_applicable or []),
        model_ran=True,
        notes=notes,
    )
    grade_report(report, policy)
    wall = time.perf_counter() - started
    ort = prep.clean_ort_time + sum(c.ort_time_s for c in checks) + (backdoor.details.get("ort_time_s", 0.0) if backdoor else 0.0)
    q_total = prep.clean_queries + sum(c.queries.total for c in checks if c.queries) + (backdoor.queries if backdoor else 0)
    q_total += sum(c.queries_dropped for c in checks)  # spent on samples a time budget dropped
    q_total += sum(q for _, q in transfers)  # replay queries on the scanned model
    report.timing = Timing(wall_s=wall, ort_s=ort, ort_share=ort / wall if wall > 0 else None, queries_total=q_total)
    return report


def crash_report(
    opts: "ScanOptions", policy: LoadedPolicy, what: str, *, sha: str, size: int, limits_text: str,
    static: list[dict[str, Any]] | None = None, model: dict[str, Any] | None = None, wall_s: float = 0.0,
    checks: list[str] | None = None,
) -> Report:
    """The report for a scan whose process died, graded by ``grading.scan_crashed``.

    ``checks`` are the JSON results the child streamed as each check completed: a completed check keeps
    its figures (and is graded on them); every other policy check is ``failed`` with the reason."""
    pol = policy.policy
    reason = f"the scan failed: {what} ({limits_text})"
    streamed: dict[str, EvasionCheck] = {}
    for text in checks or []:
        try:
            chk = EvasionCheck.model_validate_json(text)
        except Exception:
            continue  # the child is not trusted once the model ran: a malformed message is dropped
        if chk.id in {c.check_id for c in pol.checks} and chk.id not in streamed:
            chk.grades, chk.risk = [], None
            streamed[chk.id] = chk
    checks_out = [
        streamed.get(c.check_id) or
        EvasionCheck(id=c.check_id, attack=c.attack, norm=c.norm, epsilon=max(c.epsilons), epsilons=c.epsilons,
                     threat_model=pol.threat_model.access, targeted=c.targeted, target=c.target, status="failed",
                     reason=reason, seed=opts.seed)
        for c in pol.checks
    ]
    kept = [c.id for c in checks_out if c.id in streamed]
    backdoor = BackdoorSection(status="failed", reason=reason) if pol.backdoor.enabled else None
    findings = []
    for f in static or []:
        try:
            findings.append(StaticFinding.model_validate(f))
        except Exception:
            continue
    info = None
    if model:
        try:
            info = ModelInfo.model_validate(model)
        except Exception:
            info = None
    if info is None or info.sha256 != sha:
        shown = os.fspath(opts.model_path)
        if getattr(opts, "follow_symlinks", False):
            shown = os.path.realpath(shown)
        info = ModelInfo(path=shown, sha256=sha, size_bytes=size, opset={}, ir_version=0, producer="", inputs=[], outputs=[])
    not_tested = [NotTested(what=f"check {c.id}", reason=c.reason or reason) for c in checks_out if c.status != "completed"]
    if backdoor is not None:
        not_tested.append(NotTested(what="backdoor search", reason=reason))
    if not checks_out and backdoor is None:
        not_tested.append(NotTested(what="the model's behaviour", reason=reason))
    report = Report(
        tool=ToolInfo(version=__version__),
        created_at=now(),
        model=info, data=None, seed=opts.seed, environment=environment(),
        policy=policy.info(),
        checks=checks_out, backdoor=backdoor, static_findings=findings,
        not_tested=not_tested,
        timing=Timing(wall_s=wall_s, ort_s=sum(c.ort_time_s for c in checks_out), ort_share=None,
                      queries_total=sum(c.queries.total for c in checks_out if c.queries)),
        notes=[f"scan failed in the sandbox: {what}. "
               + (f"Checks completed before the failure keep their measured figures: {', '.join(kept)}; the others were not measured. "
                  if kept else "No figure in this report was measured; ")
               + "the verdict follows the policy's grading.scan_crashed rule."],
    )
    return grade_failed_scan(report, policy, reason)


def static_report(model_path: Path | str, policy: LoadedPolicy | None = None, *, follow_symlinks: bool = False) -> Report:
    """A report with the static checks only (no model execution), graded by the policy's static rules.

    Unsafe external-data references become findings here instead of errors: nothing they name is read."""
    from . import safeload
    from .static import inspect_model

    t0 = time.perf_counter()
    lp = policy or load_policy(None)
    pol = lp.policy
    path = Path(model_path)
    raw = safeload.read_model(path, max_bytes=pol.limits.max_model_mb * 1024 * 1024, strict=False, follow_symlinks=follow_symlinks)
    if raw.link is not None:
        path = raw.path or path
    findings = inspect_model(raw, path, memory_limit=pol.limits.max_memory_mb * 1024 * 1024, checks=pol.static.checks)
    report = Report(
        tool=ToolInfo(version=__version__),
        created_at=now(),
        model=static_model_info(raw, str(path)), seed=0, environment=environment(),
        policy=lp.info(),
        static_findings=findings,
        notes=["static checks only (onnxguard inspect): the model was not run; evasion attacks and backdoor search were not part of this report"],
    )
    # grade the static findings alone: no checks, no backdoor search expected
    static_only = pol.model_copy(update={"checks": [], "backdoor": pol.backdoor.model_copy(update={"enabled": False}),
                                         "static": pol.static.model_copy(update={"enabled": True})})
    grade_report(report, LoadedPolicy(policy=static_only, sha256=lp.sha256, source=lp.source, deviations=lp.deviations))
    report.timing = Timing(wall_s=time.perf_counter() - t0, ort_s=0.0, ort_share=None, queries_total=0)
    return report


def task_report(
    opts: "ScanOptions", policy: LoadedPolicy, *, model: ModelInfo, data: DataInfo | None, checks: list[EvasionCheck],
    backdoor: BackdoorSection | None, backdoor_applies: bool, static_findings: list[StaticFinding], not_tested: list[NotTested],
    not_applicable: list[NotTested], notes: list[str], started: float, clean_accuracy: Rate | None = None,
    clean_queries: int = 0, clean_ort_s: float = 0.0, model_ran: bool = True,
) -> Report:
    """The graded report of a model scanned through its task (``onnxguard.taskscan``): text classifiers, regressors,
    multi-input models, and models whose checks could not run. Checks that do not fit the model are listed in
    ``not_applicable`` and not graded; what could not be tested at all is graded by ``grading.not_run``."""
    report = Report(
        tool=ToolInfo(version=__version__), created_at=now(), model=model, data=data, seed=opts.seed, environment=environment(),
        policy=policy.info(), clean_accuracy=clean_accuracy, checks=checks, backdoor=backdoor,
        static_findings=static_findings, not_tested=not_tested, not_applicable=not_applicable, model_ran=model_ran, notes=notes,
    )
    grade_report(report, policy)  # a backdoor search that does not apply is in not_applicable, and not graded
    wall = time.perf_counter() - started
    ort = clean_ort_s + sum(c.ort_time_s for c in checks)
    q_total = clean_queries + sum(c.queries.total for c in checks if c.queries)
    report.timing = Timing(wall_s=wall, ort_s=ort, ort_share=ort / wall if wall > 0 else None, queries_total=q_total)
    return report

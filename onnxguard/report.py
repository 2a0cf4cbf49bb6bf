"""The report: a versioned pydantic model; its JSON Schema ships in the package.

Registries and reviewers depend on these field names. Every figure carries its
sample size, a confidence interval and the queries spent. Change the schema
only by bumping ``SCHEMA_VERSION`` (minor: fields added; major: anything else).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .stats import median_ci, median_ci_coverage, sequential_interval, wilson

SCHEMA_VERSION = "1.3"
# report schema versions this release reads (1.1 reports lack policy.deviations and policy.effective_sha256;
# 1.2 reports lack the backdoor classes' family_attack_success)
READABLE_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3")
REPORT_MEDIA_TYPE = "application/vnd.onnxguard.report+json"

Level = Literal["low", "medium", "high", "critical"]
Verdict = Literal["pass", "warn", "fail"]
LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")
VERDICTS: tuple[str, ...] = ("pass", "warn", "fail")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Model):
    low: float
    high: float = Field(description="upper bound; JSON null means unbounded (+infinity)", json_schema_extra={"type": ["number", "null"]})
    confidence: float = 0.95
    method: str

    @field_validator("high", mode="before")
    @classmethod
    def _unbounded(cls, v: Any) -> Any:
        # JSON has no infinity: an unbounded interval is written as null; read it back as +inf
        return float("inf") if v is None else v


class Rate(_Model):
    """A proportion with its Wilson interval: ``successes`` of ``n``."""

    value: float | None
    successes: int
    n: int
    ci: Interval

    @classmethod
    def of(cls, successes: int, n: int, confidence: float = 0.95) -> "Rate":
        lo, hi = wilson(successes, n, confidence)
        return cls(value=(successes / n) if n else None, successes=int(successes), n=int(n), ci=Interval(low=lo, high=hi, confidence=confidence, method="wilson"))


def sequential_rate(successes: int, n: int, looks: int, confidence: float = 0.95) -> Rate:
    """A rate from a check with up to ``looks`` looks at its data (see ``stats.sequential_interval``)."""
    if looks <= 1:
        return Rate.of(successes, n, confidence)
    lo, hi = sequential_interval(successes, n, looks, confidence)
    return Rate(value=(successes / n) if n else None, successes=int(successes), n=int(n),
                ci=Interval(low=lo, high=hi, confidence=confidence, method=f"clopper-pearson, Bonferroni over {looks} pre-registered looks (anytime-valid)"))


class Quantity(_Model):
    """A per-sample figure summarised by its median (with an order-statistics interval) and mean.

    ``n`` counts the samples; ``n_infinite`` those where nothing was found within budget
    (they count as +infinity for the median and are left out of the mean)."""

    median: float | None
    mean: float | None
    ci: Interval | None
    n: int
    n_infinite: int = 0

    @classmethod
    def of(cls, values: np.ndarray, confidence: float = 0.95) -> "Quantity":
        v = np.asarray(values, dtype=np.float64)
        fin = v[np.isfinite(v)]
        ci = median_ci(v, confidence)

        def f(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        med = float(np.median(v)) if v.size else None
        # below n = 6 no order-statistics interval reaches 95%: the interval is [min, max], labelled with its true coverage
        cov = median_ci_coverage(int(v.size), confidence)
        conf, method = (confidence, "order-statistics") if cov >= confidence else (round(cov, 4), f"order-statistics (min-max; exact coverage {cov:.1%} < {confidence:.0%} at n = {v.size})")
        return cls(
            median=f(med) if med is not None else None,
            mean=float(fin.mean()) if fin.size else None,
            ci=(Interval(low=ci[0], high=ci[1] if np.isfinite(ci[1]) else float("inf"), confidence=conf, method=method) if ci and np.isfinite(ci[0]) else None),
            n=int(v.size),
            n_infinite=int((~np.isfinite(v)).sum()),
        )


class QueryStats(_Model):
    total: int
    median: float | None
    mean: float | None
    max: int
    budget_per_sample: int | None

    @classmethod
    def of(cls, q: np.ndarray, budget: int | None) -> "QueryStats":
        q = np.asarray(q)
        return cls(
            total=int(q.sum()),
            median=float(np.median(q)) if q.size else None,
            mean=float(q.mean()) if q.size else None,
            max=int(q.max()) if q.size else 0,
            budget_per_sample=budget,
        )


class Grade(_Model):
    metric: str
    value: float | None
    graded_value: float | None = Field(description="the value the thresholds were applied to (a rate's upper CI bound)")
    level: Level
    verdict: Verdict
    rule: str


class TensorInfo(_Model):
    name: str
    type: str
    shape: list[int | str | None] | None


class FileDigest(_Model):
    path: str
    sha256: str
    size_bytes: int


class InputSpaceInfo(_Model):
    """One model input and the space it was attacked in, or how it was held fixed."""

    name: str
    type: str
    shape: list[int | str | None] | None
    space: Literal["box", "text", "tokens", "fixed"]
    detail: str


class ModelInfo(_Model):
    path: str
    sha256: str
    size_bytes: int
    opset: dict[str, int]
    ir_version: int
    producer: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    output_kind: str | None = None
    n_classes: int | None = None
    sample_shape: list[int] | None = None
    external_data: list[FileDigest] = Field(default_factory=list)
    task: str | None = Field(default=None, description="classifier, classifier-labels, regressor, text-classifier or other")
    task_detail: str | None = Field(default=None, description="the kind of 'other' model (detector, segmentation, embedding, generative, unknown) or the output convention")
    task_reason: str | None = None
    input_spaces: list[InputSpaceInfo] = Field(default_factory=list)
    tokenizer: FileDigest | None = None


class RangeInfo(_Model):
    source: Literal["given", "policy", "normalization", "bounds", "data", "assumed"]
    lo: float | list[float]
    hi: float | list[float]


class InputInfo(_Model):
    """The input conventions the scan resolved, each with where it came from."""

    layout: str = Field(description="NCHW, NHWC, HW (gray image), features (tabular) or flat")
    layout_source: Literal["given", "metadata", "shape", "assumed"]
    channels: str | None = Field(default=None, description="gray, rgb or bgr for images")
    normalization: str | None = Field(default=None, description="the model's (pixel - mean) / std convention, when given")
    sample_shape: list[int]
    shape_source: Literal["model", "data", "metadata", "given", "assumed"]
    degenerate_features: list[int] = Field(default_factory=list, description="tabular features whose valid range has zero width: no attack can move them")
    epsilon_meaning: str = "epsilons are fractions of each channel's (feature's) valid range: 8/255 is 8 grey levels of the original pixel"


class DataInfo(_Model):
    source: str
    sha256: str | None
    n_samples: int
    synthetic: bool
    labels: Literal["given", "model_predictions"]
    value_range: RangeInfo | None = None
    note: str | None = None
    input: InputInfo | None = None


class Environment(_Model):
    python: str
    platform: str
    onnxguard: str
    onnxruntime: str
    onnx: str
    numpy: str
    execution_provider: str


class ToolInfo(_Model):
    name: str = "onnxguard"
    version: str


class Deviation(_Model):
    """One setting that differed from the named policy when the scan ran (a command-line override)."""

    key: str = Field(description="dotted path into the policy, e.g. 'checks[square-linf].budget' or 'limits.timeout_s'")
    policy_value: Any = Field(description="the value the named policy sets (null: not set)")
    effective_value: Any = Field(description="the value the scan used")


class PolicyInfo(_Model):
    name: str
    version: str
    sha256: str = Field(description="sha256 of the named policy's file, as loaded")
    source: str
    deviations: list[Deviation] = Field(
        default_factory=list,
        description="every setting that differed from the named policy; a report with deviations was not graded under that policy",
    )
    effective_sha256: str | None = Field(
        default=None,
        description="sha256 of the effective policy (the named one with the deviations applied) as canonical JSON; "
        "null only in reports older than schema 1.2",
    )


class CurvePoint(_Model):
    epsilon: float
    success_rate: Rate
    robust_accuracy: Rate


class TextExample(_Model):
    """An attacked text: original and adversarial, with the edited spans of the adversarial marked."""

    index: int
    original: str
    adversarial: str
    label: int | None = None
    adversarial_label: int | None = None
    success: bool
    edits: int
    marked: list[list[int]] = Field(default_factory=list, description="[start, end) character spans of the adversarial text that were edited")


class EvasionCheck(_Model):
    id: str
    kind: Literal["evasion"] = "evasion"
    attack: str
    norm: str
    epsilon: float | None = Field(description="the graded budget: fraction of the valid range per feature (L0: features/pixels)")
    epsilons: list[float] = Field(default_factory=list)
    threat_model: Literal["scores", "labels"]
    targeted: bool = False
    target: int | None = None
    status: Literal["completed", "not_run", "failed"]
    reason: str | None = None
    n_samples: int = 0
    n_attacked: int = 0
    clean_accuracy: Rate | None = None
    success_rate: Rate | None = None
    finding: str | None = Field(default=None, description="plain statement of what was and was not found")
    queries: QueryStats | None = None
    perturbation: Quantity | None = Field(default=None, description="norm of the successful adversarial perturbations")
    min_perturbation: Quantity | None = Field(default=None, description="smallest budget at which each sample broke")
    robustness_curve: list[CurvePoint] = Field(default_factory=list)
    seed: int | None = None
    wall_time_s: float = 0.0
    ort_time_s: float = 0.0
    adversarials: str | None = None
    space: str | None = Field(default=None, description="the input space attacked: box, text (characters/words) or tokens (id space)")
    edit_unit: str | None = Field(default=None, description="text checks: what an edit counts (characters, words, tokens)")
    edits: Quantity | None = Field(default=None, description="text checks: edits of the successful adversarials")
    substitutes: str | None = Field(default=None, description="word/token substitution: where the substitutes came from")
    tolerance: float | None = Field(default=None, description="regressor checks: an output change beyond this (output units) counts as a success")
    output_change: Quantity | None = Field(default=None, description="regressor checks: largest |f(x+d) - f(x)| found per sample")
    examples: list[TextExample] = Field(default_factory=list)
    n_planned: int | None = Field(default=None, description="samples the policy asked for; n_samples is how many were attacked")
    sequential: str | None = Field(default=None, description="the sequential design: looks and the interval that keeps 95% under them")
    stopped_early: str | None = Field(default=None, description="why the check stopped before its planned samples, if it did")
    peak_rss_mb: float | None = Field(default=None, description="the scanning process's peak resident memory when the check finished")
    queries_dropped: int = Field(default=0, description="queries spent on samples dropped when a time budget ran out (not in queries)")
    grades: list[Grade] = Field(default_factory=list)
    risk: Level | None = None


class StaticFinding(_Model):
    id: str
    severity: Literal["info", "low", "medium", "high", "critical"]
    title: str
    detail: str
    location: str | None = None


class ClassTrigger(_Model):
    cls: int
    label: str | None = None
    full_search: bool
    trigger_size: float | None
    trigger_kind: str | None = None
    attack_success: Rate | None = None
    anomaly_index: float | None = None
    queries: int = 0
    # trigger size per searched family (patch, blend, features, ...); family ``margin`` (MM-BD) holds the largest
    # score margin reached instead, larger being more anomalous, and has no held-back check
    family_sizes: dict[str, float] = Field(default_factory=dict)
    family_anomaly_indices: dict[str, float] = Field(default_factory=dict)
    family_attack_success: dict[str, Rate] = Field(default_factory=dict)  # held-back success of each family's trigger (1.3)
    search_success: float | None = None  # the reversed trigger's success on the search samples
    prescreen_success: float | None = None  # best candidate patch's success in the pre-screen (images)
    p_value: float | None = None  # the class's anomaly index against the calibrated null of clean models' statistics
    trigger_features: list[dict[str, Any]] | None = None  # tabular: [{feature, value (raw units), normalised, kind}]
    reference_size: float | None = None  # few classes: the natural change that reaches the class (features; images: window area or blend)


class BackdoorSection(_Model):
    status: Literal["completed", "not_run", "failed"]
    reason: str | None = None
    method: str | None = None
    threat_model: Literal["scores", "labels"] = "scores"
    classes: list[ClassTrigger] = Field(default_factory=list)
    flagged_classes: list[int] = Field(default_factory=list)
    anomaly_threshold: float | None = None
    max_anomaly_index: float | None = None
    fully_searched_classes: list[int] = Field(default_factory=list)
    trigger_files: list[str] = Field(default_factory=list)
    queries: int = 0
    query_budget: int | None = None
    wall_time_s: float = 0.0
    finding: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    p_value: float | None = None  # empirical p-value of max_anomaly_index against the calibrated null (details.calibration)
    statistic_regime: str | None = None  # image | tabular | few | few-image: which statistic, and which null
    families_searched: list[str] = Field(default_factory=list)
    families_not_covered: list[str] = Field(default_factory=list)  # trigger families with no search, stated
    early_stops: list[str] = Field(default_factory=list)  # every stage that stopped early, with where and why
    grades: list[Grade] = Field(default_factory=list)
    risk: Level | None = None


class TransferResult(_Model):
    source_model: str
    source_sha256: str
    attack: str
    norm: str
    epsilon: float | None
    n_adversarials: int
    transfer_rate: Rate
    grades: list[Grade] = Field(default_factory=list)
    risk: Level | None = None


class NotTested(_Model):
    what: str
    reason: str
    graded: bool = Field(default=False, description="graded by the policy's not_run rule (in coverage_grades)")


class Summary(_Model):
    highest_risk: Level
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)
    fail_on: Verdict = "fail"


class Timing(_Model):
    wall_s: float
    ort_s: float
    ort_share: float | None
    queries_total: int


class Report(_Model):
    schema_version: str = SCHEMA_VERSION
    tool: ToolInfo
    created_at: str
    model: ModelInfo
    data: DataInfo | None = None
    seed: int
    environment: Environment
    policy: PolicyInfo | None = None
    clean_accuracy: Rate | None = None
    checks: list[EvasionCheck] = Field(default_factory=list)
    backdoor: BackdoorSection | None = None
    transfer: list[TransferResult] = Field(default_factory=list)
    static_findings: list[StaticFinding] = Field(default_factory=list)
    static_grades: list[Grade] = Field(default_factory=list)
    coverage_grades: list[Grade] = Field(default_factory=list, description="grades of what could not be tested at all (no check fits the model, the model could not run)")
    not_tested: list[NotTested] = Field(default_factory=list)
    not_applicable: list[NotTested] = Field(default_factory=list, description="policy checks that do not fit this model's task or inputs (not graded)")
    model_ran: bool | None = Field(default=None, description="false when the model could not be run: a static-only report")
    summary: Summary | None = None
    timing: Timing | None = None
    notes: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")


VOLATILE_FIELDS = ("created_at", "wall_time_s", "ort_time_s", "timing", "wall_s", "ort_s", "ort_share", "peak_rss_mb")


def stable_view(obj: Any) -> Any:
    """The report without timestamps and timings: what a fixed seed must reproduce."""
    if isinstance(obj, BaseModel):
        obj = json.loads(obj.model_dump_json())
    if isinstance(obj, dict):
        return {k: stable_view(v) for k, v in obj.items() if k not in VOLATILE_FIELDS}
    if isinstance(obj, list):
        return [stable_view(v) for v in obj]
    return obj


def json_schema() -> dict[str, Any]:
    schema = Report.model_json_schema()
    schema["$id"] = f"https://onnxguard.dev/schemas/report/{SCHEMA_VERSION}"
    schema["title"] = "onnxguard risk report"
    return schema


def schema_path() -> Path:
    return Path(__file__).parent / "schemas" / f"report-{SCHEMA_VERSION}.schema.json"


def load_report(data: str | bytes | dict[str, Any]) -> Report:
    if isinstance(data, (str, bytes)):
        return Report.model_validate_json(data)
    return Report.model_validate(data)

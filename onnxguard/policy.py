"""Policies: what to run, with which budgets, and how to grade what was measured.

A policy is a TOML (or JSON) file validated by the pydantic models below;
unknown keys, wrong types and impossible values are refused with a message
naming the file, the key and what was expected. Grading is conservative: a
rate is graded on the end of its confidence interval that is worse for the
model, so a small sample cannot buy a pass; a check that could not run is
graded by the explicit ``not_run`` rule.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import PolicyError
from .report import LEVELS, VERDICTS, Grade, Level, Quantity, Rate, Verdict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POLICY_DIR = Path(__file__).parent / "policies"
DEFAULT_POLICY = "standard"
ATTACK_NAMES = ("square", "fd-pgd", "fgsm", "hopskipjump", "sparse-rs", "one-pixel")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meta(_Strict):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""


class ThreatModel(_Strict):
    access: Literal["scores", "labels"] = "scores"
    range: tuple[float, float] | None = None
    allow_synthetic: bool = True

    @field_validator("range")
    @classmethod
    def _range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"range must be [lo, hi] with lo < hi, got {list(v)}")
        return v


class Thresholds(_Strict):
    """Where each risk level starts. ``higher`` means larger values are worse."""

    worse: Literal["higher", "lower"]
    medium: float
    high: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        a, b, c = self.medium, self.high, self.critical
        ok = (a <= b <= c) if self.worse == "higher" else (a >= b >= c)
        if not ok:
            order = "medium <= high <= critical" if self.worse == "higher" else "medium >= high >= critical"
            raise ValueError(f"thresholds out of order: with worse = '{self.worse}' they must satisfy {order} (got {a}, {b}, {c})")
        return self

    def level(self, value: float) -> Level:
        if self.worse == "higher":
            return "critical" if value >= self.critical else "high" if value >= self.high else "medium" if value >= self.medium else "low"
        return "critical" if value <= self.critical else "high" if value <= self.high else "medium" if value <= self.medium else "low"

    def describe(self) -> str:
        op = ">=" if self.worse == "higher" else "<="
        return f"medium {op} {self.medium:g}, high {op} {self.high:g}, critical {op} {self.critical:g}"


class CheckSpec(_Strict):
    id: str | None = None
    attack: Literal["square", "fd-pgd", "fgsm", "hopskipjump", "sparse-rs", "one-pixel"]
    norm: Literal["linf", "l2", "l0"]
    epsilon: float | list[float]
    samples: int = Field(default=100, ge=1, le=100_000)
    budget: int = Field(ge=1, le=10_000_000, description="model queries per sample")
    targeted: bool = False
    target: int | None = Field(default=None, ge=0)
    min_perturbation: bool = False
    success_rate: Thresholds | None = None

    @field_validator("epsilon")
    @classmethod
    def _eps(cls, v: float | list[float]) -> float | list[float]:
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise ValueError("epsilon list is empty")
        for e in vals:
            if not (e >= 0) or e != e or e == float("inf"):
                raise ValueError(f"epsilon must be a finite number >= 0, got {e}")
        if isinstance(v, list) and sorted(v) != v:
            raise ValueError(f"epsilon list must be in increasing order, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "CheckSpec":
        from .attacks import ATTACKS

        spec = ATTACKS.get(self.attack)
        if spec is not None and self.norm not in spec.norms:
            raise ValueError(f"attack '{self.attack}' supports norms {list(spec.norms)}, not '{self.norm}'")
        if self.norm == "l0":
            for e in self.epsilons:
                if e != int(e):
                    raise ValueError(f"an L0 epsilon counts pixels or features and must be a whole number, got {e}")
        elif max(self.epsilons) > 1e6:
            raise ValueError("epsilon is implausibly large")
        if self.norm == "linf" and max(self.epsilons) > 1:
            raise ValueError(f"an L-infinity epsilon is a fraction of the valid range and cannot exceed 1, got {max(self.epsilons)}")
        return self

    @property
    def epsilons(self) -> list[float]:
        return list(self.epsilon) if isinstance(self.epsilon, list) else [float(self.epsilon)]

    @property
    def check_id(self) -> str:
        return self.id or f"{self.attack}-{self.norm}"


class BackdoorSpec(_Strict):
    enabled: bool = True
    budget: int = Field(default=200_000, ge=1, description="model queries for the whole search")
    time_limit_s: float = Field(default=180.0, gt=0)
    samples_per_class: int = Field(default=20, ge=2)
    full_search_classes: int = Field(default=10, ge=1, description="classes that get the full search after the pre-screen")
    anomaly_threshold: float | None = Field(
        default=None, gt=0,
        description="a class is flagged when its trigger's anomaly index exceeds this; unset: the threshold calibrated on "
                    "clean models for a false-positive rate of at most 5% (onnxguard/backdoor/null.json)")


class StaticSpec(_Strict):
    enabled: bool = True


class Limits(_Strict):
    max_memory_mb: int = Field(default=4096, ge=64)
    timeout_s: float = Field(default=1800.0, gt=0)
    cpu_time_s: float | None = Field(default=None, gt=0)
    max_model_mb: int = Field(default=2048, ge=1)


class LevelRule(_Strict):
    level: Level
    verdict: Verdict


def _default_verdicts() -> dict[str, str]:
    return {"low": "pass", "medium": "pass", "high": "warn", "critical": "fail"}


class Grading(_Strict):
    attack_success_rate: Thresholds = Thresholds(worse="higher", medium=0.1, high=0.3, critical=0.6)
    median_min_perturbation: Thresholds | None = None
    backdoor_anomaly_index: Thresholds = Thresholds(worse="higher", medium=2.0, high=3.0, critical=4.0)
    clean_accuracy: Thresholds | None = None
    transfer_rate: Thresholds | None = None
    static_findings: dict[Literal["info", "low", "medium", "high", "critical"], Level] = Field(
        default_factory=lambda: {"info": "low", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
    )
    verdicts: dict[Level, Verdict] = Field(default_factory=_default_verdicts)
    not_run: LevelRule = LevelRule(level="medium", verdict="warn")
    scan_crashed: LevelRule = LevelRule(level="critical", verdict="fail")

    @field_validator("verdicts")
    @classmethod
    def _all_levels(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [lv for lv in LEVELS if lv not in v]
        if missing:
            raise ValueError(f"verdicts must give a verdict for every level; missing {missing}")
        ranks = [VERDICTS.index(v[lv]) for lv in LEVELS]
        if ranks != sorted(ranks):
            raise ValueError(f"verdicts must not get milder as the level rises, got {v}")
        return v


class Policy(_Strict):
    policy: Meta
    threat_model: ThreatModel = ThreatModel()
    checks: list[CheckSpec] = Field(default_factory=list)
    backdoor: BackdoorSpec = BackdoorSpec()
    static: StaticSpec = StaticSpec()
    limits: Limits = Limits()
    grading: Grading = Grading()

    @model_validator(mode="after")
    def _unique_ids(self) -> "Policy":
        ids = [c.check_id for c in self.checks]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"check ids must be unique; repeated: {dup} (give each check an 'id')")
        return self

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def version(self) -> str:
        return self.policy.version


class LoadedPolicy(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    policy: Policy
    sha256: str
    source: str


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-")) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the policy format)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {e['input']!r})"[:300]
        lines.append(f"  {loc}: {msg}")
    return f"invalid policy {source}:\n" + "\n".join(lines)


def parse_policy(data: bytes, source: str) -> LoadedPolicy:
    """Validate policy bytes (TOML, or JSON when they start with '{')."""
    text = data.decode("utf-8", errors="replace")
    try:
        raw: Any = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"invalid policy {source}: not valid TOML/JSON: {exc}") from None
    try:
        pol = Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(_format_errors(source, exc)) from None
    return LoadedPolicy(policy=pol, sha256=hashlib.sha256(data).hexdigest(), source=source)


def shipped_policies() -> list[str]:
    return sorted(p.stem for p in POLICY_DIR.glob("*.toml"))


def load_policy(name_or_path: str | None) -> LoadedPolicy:
    """A shipped policy by name (``standard``), or a file path."""
    ref = name_or_path or DEFAULT_POLICY
    p = Path(ref)
    if p.suffix.lower() in (".toml", ".json") or p.exists():
        if not p.is_file():
            raise PolicyError(f"policy file not found: {ref}")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read policy {ref}: {exc.strerror}") from None
        return parse_policy(data, str(p))
    shipped = POLICY_DIR / f"{ref}.toml"
    if not shipped.is_file():
        raise PolicyError(f"unknown policy '{ref}': shipped policies are {', '.join(shipped_policies())}, or give a .toml/.json file")
    return parse_policy(shipped.read_bytes(), f"{ref} (shipped)")


# -- grading ---------------------------------------------------------------


def verdict_for(level: Level, grading: Grading) -> Verdict:
    return grading.verdicts[level]


def grade_rate(metric: str, rate: Rate, thr: Thresholds, grading: Grading) -> Grade:
    """Grade a proportion on its interval's worse end (upper bound when higher is worse)."""
    graded = rate.ci.high if thr.worse == "higher" else rate.ci.low
    level = thr.level(graded)
    end = "upper" if thr.worse == "higher" else "lower"
    point = f"{rate.value:.3f}" if rate.value is not None else "n/a"
    rule = f"{metric}: {end} 95% bound {graded:.3f} (point {point}, n={rate.n}); thresholds {thr.describe()}"
    return Grade(metric=metric, value=rate.value, graded_value=graded, level=level, verdict=verdict_for(level, grading), rule=rule)


def grade_quantity(metric: str, q: Quantity, thr: Thresholds, grading: Grading) -> Grade:
    """Grade a median on its interval's worse end."""
    if q.ci is not None:
        graded = q.ci.low if thr.worse == "lower" else q.ci.high
    else:
        graded = q.median if q.median is not None else float("inf")
    level = thr.level(graded)
    rule = f"{metric}: {'lower' if thr.worse == 'lower' else 'upper'} 95% bound {graded:.4g} of the median (n={q.n}); thresholds {thr.describe()}"
    return Grade(metric=metric, value=q.median, graded_value=graded if graded != float("inf") else None, level=level, verdict=verdict_for(level, grading), rule=rule)


def grade_value(metric: str, value: float, thr: Thresholds, grading: Grading) -> Grade:
    level = thr.level(value)
    return Grade(metric=metric, value=value, graded_value=value, level=level, verdict=verdict_for(level, grading), rule=f"{metric} = {value:.3g}; thresholds {thr.describe()}")


def grade_not_run(metric: str, reason: str, grading: Grading) -> Grade:
    rule = grading.not_run
    return Grade(metric=metric, value=None, graded_value=None, level=rule.level, verdict=rule.verdict, rule=f"insufficient evidence: {reason} (policy rule grading.not_run)")


def grade_static(severity: str, finding_id: str, grading: Grading) -> Grade:
    level = grading.static_findings[severity]  # type: ignore[index]
    return Grade(metric=f"static:{finding_id}", value=None, graded_value=None, level=level, verdict=verdict_for(level, grading), rule=f"static finding of severity {severity} -> {level} (grading.static_findings)")


def worst_level(levels: list[str]) -> Level:
    return max(levels, key=LEVELS.index) if levels else "low"  # type: ignore[return-value]


def worst_verdict(verdicts: list[str]) -> Verdict:
    return max(verdicts, key=VERDICTS.index) if verdicts else "pass"  # type: ignore[return-value]

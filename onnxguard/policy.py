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
from .report import LEVELS, VERDICTS, Deviation, Level, PolicyInfo, Verdict
from .text import sanitize

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POLICY_DIR = Path(__file__).parent / "policies"
DEFAULT_POLICY = "standard"
_WEEK_S = 7 * 24 * 3600.0
DEFAULT_INFERENCE_TIMEOUT_S = 30.0
MAX_POLICY_BYTES = 1024 * 1024
MAX_POLICY_DEPTH = 32  # arrays and inline tables nested deeper than this are refused before parsing


class _Strict(BaseModel):
    # no NaN or infinity anywhere in a policy: every bound must be a real number
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Meta(_Strict):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""


class ThreatModel(_Strict):
    access: Literal["scores", "labels"] = "scores"
    range: tuple[float, float] | list[tuple[float, float]] | None = Field(
        default=None, description="valid input range [lo, hi], or one [lo, hi] per image channel")
    bounds: list[tuple[float, float]] | None = Field(default=None, description="per-feature [lo, hi] of a tabular input")
    allow_synthetic: bool = True

    @field_validator("range")
    @classmethod
    def _range(cls, v: Any) -> Any:
        pairs = v if isinstance(v, list) else [v] if v is not None else []
        if isinstance(v, list) and not 1 <= len(v) <= 4:
            raise ValueError(f"a per-channel range has one [lo, hi] per channel (1 to 4), got {len(v)}")
        for lo, hi in pairs:
            if not lo < hi:
                raise ValueError(f"range must be [lo, hi] with lo < hi, got {[lo, hi]}")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        for i, (lo, hi) in enumerate(v or []):
            if not lo <= hi:
                raise ValueError(f"bounds[{i}] must be [lo, hi] with lo <= hi, got {[lo, hi]}")
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
    attack: str = Field(description="an attack of the registry, onnxguard.attacks.ATTACKS")
    norm: Literal["linf", "l2", "l0", "chars", "words", "tokens"]
    epsilon: float | list[float]
    samples: int = Field(default=100, ge=1, le=100_000)
    budget: int = Field(ge=1, le=10_000_000, description="model queries per sample")
    targeted: bool = False
    target: int | None = Field(default=None, ge=0)
    min_perturbation: bool = False
    success_rate: Thresholds | None = None
    tolerance: float | None = Field(default=None, gt=0, description="regressor checks: an output change beyond this counts as a success")
    tolerance_of: Literal["absolute", "spread"] = Field(
        default="spread", description="regressor checks: tolerance in output units ('absolute') or as a fraction of the standard deviation of the clean predictions over the samples ('spread')")
    early_stop: bool = Field(default=True, description="stop taking samples once the grade can no longer change (sequential, anytime-valid)")
    looks: int = Field(default=5, ge=1, le=50, description="pre-registered looks of the sequential design")
    time_limit_s: float | None = Field(default=None, gt=0, le=_WEEK_S, description="wall-time budget of the check; figures cover the samples that finished")

    @field_validator("attack")
    @classmethod
    def _attack(cls, v: str) -> str:
        from .attacks import ATTACKS

        if v not in ATTACKS:
            raise ValueError(f"unknown attack '{v}': one of {', '.join(ATTACKS)}")
        return v

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

        spec = ATTACKS[self.attack]
        if self.norm not in spec.norms:
            raise ValueError(f"attack '{self.attack}' supports norms {list(spec.norms)}, not '{self.norm}'")
        if self.norm in ("chars", "words", "tokens"):
            for e in self.epsilons:
                if e <= 0 or (e >= 1 and e != int(e)):
                    raise ValueError(f"a text edit budget is a fraction of the text (0 < epsilon < 1) or a whole count, got {e}")
            return self
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
    budget: int = Field(default=200_000, ge=1, le=1_000_000_000, description="model queries for the whole search")
    time_limit_s: float = Field(default=180.0, gt=0, le=_WEEK_S)
    samples_per_class: int = Field(default=20, ge=2, le=100_000)
    full_search_classes: int = Field(default=10, ge=1, le=100_000, description="classes that get the full search after the pre-screen")
    anomaly_threshold: float | None = Field(
        default=None, gt=0, le=1e6,
        description="a class is flagged when its trigger's anomaly index exceeds this; unset: the threshold calibrated on "
                    "clean models for a false-positive rate of at most 5% (onnxguard/backdoor/null.json)")


class StaticCheckSpec(_Strict):
    """One static check's switch and options (``[static.checks.<id>]``)."""

    enabled: bool = True
    options: dict[str, int | float | bool | str] = Field(default_factory=dict)


class StaticSpec(_Strict):
    enabled: bool = True  # grade the static findings
    checks: dict[str, StaticCheckSpec] = Field(default_factory=dict, description="per check id of onnxguard.static.STATIC_CHECKS")

    @model_validator(mode="after")
    def _known(self) -> "StaticSpec":
        from .static import STATIC_CHECKS

        for cid, cfg in self.checks.items():
            check = STATIC_CHECKS.get(cid)
            if check is None:
                raise ValueError(f"unknown static check '{cid}': one of {', '.join(STATIC_CHECKS)}")
            if not cfg.enabled and check.can_refuse:
                raise ValueError(f"static check '{cid}' decides whether a model may run at all and cannot be switched off")
            unknown = set(cfg.options) - set(check.options)
            if unknown:
                raise ValueError(f"static check '{cid}' has no option {', '.join(sorted(unknown))}"
                                 + (f" (options: {', '.join(check.options)})" if check.options else " (it takes no options)"))
        return self


class Limits(_Strict):
    max_memory_mb: int = Field(default=4096, ge=64, le=16 * 1024 * 1024)
    timeout_s: float = Field(default=1800.0, gt=0, le=_WEEK_S, description="wall time of the whole scan (the sandbox kills it after)")
    cpu_time_s: float | None = Field(default=None, gt=0, le=_WEEK_S)
    max_model_mb: int = Field(default=2048, ge=1, le=1024 * 1024)
    inference_timeout_s: float = Field(
        default=DEFAULT_INFERENCE_TIMEOUT_S, gt=0, le=_WEEK_S,
        description="wall time of one onnxruntime run (one batch); a run that takes longer is stopped and the check is not run",
    )
    scan_time_s: float | None = Field(default=None, gt=0, le=_WEEK_S, description="soft wall-time budget of all checks: once spent, checks stop taking samples")


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


def canonical_policy_json(policy: Policy) -> bytes:
    """The policy as canonical JSON (sorted keys, no spaces, UTF-8): what ``effective_sha256`` digests."""
    return json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def policy_digest(policy: Policy) -> str:
    return hashlib.sha256(canonical_policy_json(policy)).hexdigest()


class LoadedPolicy(BaseModel):
    """A policy as loaded (``sha256``: of its file), possibly with command-line overrides applied.

    ``policy`` is always the *effective* policy, the one every check reads; ``deviations`` lists
    where it differs from the named one (empty when no override changed anything)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    policy: Policy
    sha256: str
    source: str
    deviations: tuple[Deviation, ...] = ()

    @property
    def effective_sha256(self) -> str:
        return policy_digest(self.policy)

    def info(self) -> PolicyInfo:
        """What the report records about the policy."""
        p = self.policy
        return PolicyInfo(name=p.name, version=p.version, sha256=self.sha256, source=self.source,
                          deviations=list(self.deviations), effective_sha256=self.effective_sha256)


def _dev_key(path: tuple[str, ...]) -> str:
    return ".".join(path).replace(".[", "[")


def apply_overrides(
    loaded: LoadedPolicy,
    *,
    budget: int | None = None,
    samples: int | None = None,
    target: int | None = None,
    epsilon: float | list[float] | None = None,
    value_range: tuple[float, float] | None = None,
    max_memory_mb: int | None = None,
    timeout_s: float | None = None,
    cpu_time_s: float | None = None,
    inference_timeout_s: float | None = None,
) -> LoadedPolicy:
    """The effective policy: ``loaded`` with every command-line override applied, once, in one place.

    Each setting that ends up different from the named policy becomes a :class:`Deviation`
    (overrides equal to the policy's value are not deviations). Applying overrides to an
    already-overridden policy keeps each deviation's original ``policy_value``. The result is
    validated like a policy file: an impossible override raises :class:`PolicyError`."""
    pol = loaded.policy
    changes: dict[tuple[str, ...], Any] = {}

    checks = []
    for c in pol.checks:
        upd: dict[str, Any] = {}
        if budget is not None:
            upd["budget"] = int(budget)
        if samples is not None:
            upd["samples"] = int(samples)
        if target is not None:
            upd["target"] = int(target)
        if epsilon is not None:
            upd["epsilon"] = epsilon
        for k, v in upd.items():
            if getattr(c, k) != v:
                changes[("checks", f"[{c.check_id}]", k)] = (getattr(c, k), v)
        checks.append(c.model_dump() | upd)
    limits = pol.limits.model_dump()
    for k, v in (("max_memory_mb", max_memory_mb), ("timeout_s", timeout_s), ("cpu_time_s", cpu_time_s),
                 ("inference_timeout_s", inference_timeout_s)):
        if v is not None:
            v = float(v) if k.endswith("_s") else int(v)
        if v is not None and limits[k] != v:
            changes[("limits", k)] = (limits[k], v)
            limits[k] = v
    threat = pol.threat_model.model_dump()
    if value_range is not None:
        per_channel = len(value_range) > 0 and isinstance(value_range[0], (tuple, list))
        vr: Any = [(float(lo), float(hi)) for lo, hi in value_range] if per_channel else (float(value_range[0]), float(value_range[1]))

        def as_json(r: Any) -> Any:
            return None if r is None else [list(p) for p in r] if isinstance(r, list) else list(r)

        if as_json(threat["range"]) != as_json(vr):
            changes[("threat_model", "range")] = (as_json(threat["range"]), as_json(vr))
            threat["range"] = vr
    if not changes:
        return loaded
    doc = pol.model_dump()
    doc.update(checks=checks, limits=limits, threat_model=threat)
    try:
        eff = Policy.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(_format_errors(f"{loaded.source} with the command-line overrides", exc)) from None

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    merged = {d.key: d for d in loaded.deviations}
    for path, (before, after) in changes.items():
        key = _dev_key(path)
        orig = merged[key].policy_value if key in merged else plain(before)
        if orig == plain(after):
            merged.pop(key, None)
        else:
            merged[key] = Deviation(key=key, policy_value=orig, effective_value=plain(after))
    return LoadedPolicy(policy=eff, sha256=loaded.sha256, source=loaded.source, deviations=tuple(merged.values()))


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
    return f"invalid policy {source.replace(chr(10), chr(92) + 'n')}:\n" + "\n".join(ln.replace("\n", "\\n") for ln in lines)


def _nesting_depth(text: str) -> tuple[int, int]:
    """Deepest nesting of ``[``/``{`` outside strings and comments (TOML or JSON), and its line.

    A cheap linear scan run before the parser, so a file nested 10^5 deep never reaches a
    recursive parser. Table headers (``[a.b]``, ``[[checks]]``) count as 1 or 2, which is harmless."""
    depth = best = 0
    line = best_line = 1
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "\"'":
            triple = text.startswith(ch * 3, i)
            end = ch * 3 if triple else ch
            j = i + len(end)
            while j < n:
                if ch == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(end, j):
                    break
                if text[j] == "\n":
                    if not triple:
                        break
                    line += 1
                j += 1
            i = j + len(end)
            continue
        elif ch in "[{":
            depth += 1
            if depth > best:
                best, best_line = depth, line
        elif ch in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return best, best_line


def parse_policy(data: bytes, source: str) -> LoadedPolicy:
    """Validate policy bytes (TOML, or JSON when they start with '{')."""
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"invalid policy {source}: {len(data)} bytes, over the {MAX_POLICY_BYTES}-byte limit for a policy file")
    text = data.decode("utf-8", errors="replace")
    depth, where = _nesting_depth(text)
    if depth > MAX_POLICY_DEPTH:
        line = text.splitlines()[where - 1] if where - 1 < len(text.splitlines()) else ""
        key = line.split("=", 1)[0].strip() if "=" in line else ""
        named = f" (key '{sanitize(key, 60)}')" if key and len(key) <= 200 and "[" not in key else ""
        raise PolicyError(f"invalid policy {source}: arrays or tables nested {depth} deep at line {where}{named}, "
                          f"over the limit of {MAX_POLICY_DEPTH}; refused before parsing")
    try:
        raw: Any = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"invalid policy {source}: not valid TOML/JSON: {sanitize(str(exc), 300)}") from None
    except RecursionError:
        raise PolicyError(f"invalid policy {source}: nested too deeply to parse") from None
    try:
        pol = Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(_format_errors(source, exc)) from None
    except RecursionError:
        raise PolicyError(f"invalid policy {source}: nested too deeply to validate") from None
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

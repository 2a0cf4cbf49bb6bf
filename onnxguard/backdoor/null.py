"""The calibrated null: the backdoor statistic of clean models, and what it implies for flagging.

``null.json`` (shipped beside this module) holds, per regime, the search's model
statistic on clean models of several architectures that the tests and the
benchmark zoo do not use (MLPs and CNNs of different widths, logits and softmax
outputs, 1 and 3 channels, 2 to 10 classes); ``benchmarks/backdoor_null.py``
builds it and records its provenance (script, seeds, policy budget, tool version,
models). A regime is the kind of statistic the search computes:

* ``image``: the largest anomaly index (MAD across classes) of an image model
  with at least 4 classes;
* ``tabular``: the same for a tabular model with at least 4 classes;
* ``few``: the reference-ratio index of a tabular model with 2 or 3 classes
  (:func:`~onnxguard.backdoor.anomaly.reference_indices`), where a MAD across
  three values means little;
* ``few-image``: the reference-ratio index of an image model with 2 or 3 classes
  (:func:`~onnxguard.backdoor.anomaly.few_image_indices`, against the natural
  references of :mod:`~onnxguard.backdoor.natural`); its null comes from the
  2- and 3-class image models of ``benchmarks/backdoor_models.py:null_specs()``.
  Until ``null.json`` holds it, the regime falls back to ``FALLBACK_THRESHOLD``
  and reports itself uncalibrated.

The threshold and its false-positive rate come from the same clean models, so that rate is optimistic;
``null.json`` also holds a leave-one-out estimate (each clean model against the threshold of the others),
which the report repeats (``null_fpr_leave_one_out``).

The default flag threshold of a regime is the smallest order statistic of the
null that at most ``FPR_TARGET`` of the null exceeds; the report gives that
false-positive rate with its Wilson interval (``n`` = the null's size), and,
per model, the empirical p-value ``(1 + #{null >= s}) / (1 + n)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..stats import wilson

NULL_FILE = Path(__file__).with_name("null.json")
FPR_TARGET = 0.05
FALLBACK_THRESHOLD = 3.0  # a regime without a null: the classic Neural Cleanse threshold, reported as uncalibrated


@dataclass(frozen=True)
class Calibration:
    regime: str
    threshold: float
    source: str  # "null" | "policy" | "uncalibrated"
    null_values: tuple[float, ...]
    fpr: float | None  # share of the null above the threshold
    fpr_ci: tuple[float, float] | None
    provenance: dict
    path: str = str(NULL_FILE)
    leave_one_out: dict | None = None  # {exceed, n, rate, ci}: out-of-sample false-positive rate on the null
    differs: tuple[str, ...] = ()  # the search settings in which this scan differs from the null's (empty: it matches)

    @property
    def n(self) -> int:
        return len(self.null_values)

    def p_value(self, s: float | None) -> float | None:
        """Empirical p-value of a statistic against the null (None without a null or a statistic)."""
        if s is None or not self.null_values or not math.isfinite(s):
            return None
        v = np.asarray(self.null_values)
        return float((1 + int((v >= s - 1e-12).sum())) / (1 + len(v)))

    def as_dict(self) -> dict:
        return {
            "regime": self.regime, "threshold": round(self.threshold, 4), "threshold_source": self.source,
            "null_n": self.n, "null_fpr": None if self.fpr is None else round(self.fpr, 4),
            "null_fpr_ci": None if self.fpr_ci is None else [round(self.fpr_ci[0], 4), round(self.fpr_ci[1], 4)],
            "fpr_target": FPR_TARGET,
            "null_fpr_leave_one_out": self.leave_one_out,
            "null_matches_scan": not self.differs if self.provenance else None,
            "scan_differs_from_null_in": list(self.differs),
            # a summary: the per-model list stays in the shipped null.json (the report names it by its sha256)
            "null_provenance": {k: v for k, v in self.provenance.items() if k != "models"} | {"file_sha256": _sha256(Path(self.path))},
        }


@lru_cache(maxsize=4)
def _sha256(path: Path) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        return {}
    return json.loads(p.read_text())


def calibrated_threshold(values: list[float], fpr_target: float = FPR_TARGET) -> float:
    """The smallest order statistic ``t`` of ``values`` with ``#{v > t} <= fpr_target * n``."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    allowed = int(math.floor(fpr_target * n + 1e-9))
    return float(v[n - 1 - allowed])


# what a null is built under; search_version: the search code that built it (search.SEARCH_VERSION)
SETTINGS = ("budget", "samples_per_class", "full_search_classes", "threat_model", "search_version")


def _differs(prov: dict, settings: dict | None) -> tuple[str, ...]:
    if not settings:
        return ()
    return tuple(k for k in SETTINGS if k in settings and prov.get(k) != settings[k])


def calibration(regime: str, policy_threshold: float | None, path: Path = NULL_FILE, settings: dict | None = None) -> Calibration:
    """The threshold of ``regime``: the policy's, else the null's. ``null.json`` holds the null built under the
    default policy and, under ``variants``, nulls built under other search settings (budget, samples per class,
    full-search classes, threat model); ``settings`` picks the one built under the scan's own settings, else the
    default one, and the calibration then says in which settings the scan differs (its false-positive rate is
    not calibrated for them)."""
    top = _load(str(path))
    data = top
    for v in [top] + list(top.get("variants", [])):
        if settings and not _differs(v.get("provenance", {}), settings) and v.get("regimes", {}).get(regime):
            data = v
            break
    reg = data.get("regimes", {}).get(regime, {})
    values = tuple(float(x) for x in reg.get("values", []) if x is not None and math.isfinite(x))
    prov = dict(data.get("provenance", {}))
    if policy_threshold is not None:
        thr, src = float(policy_threshold), "policy"
    elif len(values) >= 5:
        thr, src = calibrated_threshold(list(values)), "null"
    else:
        thr, src = FALLBACK_THRESHOLD, "uncalibrated"
    fpr = fpr_ci = None
    if values:
        k = int((np.asarray(values) > thr + 1e-12).sum())
        fpr, fpr_ci = k / len(values), wilson(k, len(values))
    differs = _differs(prov, settings) if values else ()
    return Calibration(regime, thr, src, values, fpr, fpr_ci, prov, str(path), reg.get("leave_one_out_fpr"), differs)

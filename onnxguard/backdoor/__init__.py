"""Black-box backdoor-trigger search: find planted triggers through queries alone.

``search_backdoors(prep, spec, threat=..., seed=...)`` reverse-engineers, for every
candidate target class, the smallest trigger that sends clean samples of the other
classes to it (Neural Cleanse, Wang et al. 2019, with zeroth-order gradients as in
B3D, Dong et al. 2021), in two families for images (localised patch masks and
global blended patterns) and as few out-of-range features for tabular inputs, then
flags classes whose trigger is anomalously small (median absolute deviation).

Modules: :mod:`.search` (the orchestration), :mod:`.zo` (mask/pattern optimiser),
:mod:`.triggers` (stamping, patch pre-screen), :mod:`.tabular`, :mod:`.anomaly`,
:mod:`.squares` (decision-based square-patch sweep), :mod:`.probe` (the budgeted door to the oracle), :mod:`.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..oracle import Oracle
from ..report import BackdoorSection
from .search import run_search

if TYPE_CHECKING:
    from ..policy import BackdoorSpec
    from ..evasion import Prepared


def search_backdoors(
    prep: "Prepared",
    spec: "BackdoorSpec",
    *,
    threat: str,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    out_dir: Path | None = None,
) -> BackdoorSection:
    """Run the backdoor search of the policy's ``[backdoor]`` section on prepared samples."""
    model = prep.model
    labels_only = threat == "labels" or not model.has_scores
    n_classes = model.n_classes or (int(max(prep.y.max(), prep.pred.max())) + 1 if len(prep.y) else 0)
    oracle = Oracle(model, prep.domain, n_samples=1, budget=spec.budget, labels_only=labels_only)
    section = run_search(
        oracle, prep.z, np.asarray(prep.y), np.asarray(prep.pred),
        n_classes=n_classes, budget=spec.budget, time_limit_s=spec.time_limit_s,
        samples_per_class=spec.samples_per_class, full_search_classes=spec.full_search_classes,
        anomaly_threshold=spec.anomaly_threshold, seed=seed, progress=progress, out_dir=out_dir,
        class_labels=model.class_labels,
    )
    if prep.samples.synthetic:
        section.details["synthetic_samples"] = True
    return section


__all__ = ["search_backdoors"]

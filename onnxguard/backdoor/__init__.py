"""Black-box backdoor-trigger search: find planted triggers through queries alone.

``search_backdoors(prep, spec, threat=..., seed=...)`` reverse-engineers, for every
candidate target class, the smallest trigger that sends clean samples of the other
classes to it (Neural Cleanse, Wang et al. 2019, with zeroth-order gradients as in
B3D, Dong et al. 2021), in two families for images (localised patch masks and
global blended patterns, plus sweeps of square patches and smooth global patterns, and a
search for smooth warps, WaNet)
and as few features set to beyond-range or rare values for tabular inputs, then
flags classes whose trigger is anomalously small (median absolute deviation; a
reference ratio for 2 or 3 classes), at a threshold calibrated on clean models
(:mod:`.null`), with an empirical p-value.

Modules: :mod:`.search` (the orchestration), :mod:`.zo` (mask/pattern optimiser),
:mod:`.triggers` (stamping, patch pre-screen), :mod:`.tabular`, :mod:`.anomaly`,
:mod:`.squares` (decision-based square-patch sweep), :mod:`.smooth` (SIG sinusoids, low-frequency
fields), :mod:`.warp` (warping triggers), :mod:`.null` (the calibrated null), :mod:`.probe` (the budgeted door to the oracle).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..oracle import Domain, Oracle
from ..report import BackdoorSection
from .search import run_search
from .tabular import extended_bounds

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
    null_file: Path | None = None,
) -> BackdoorSection:
    """Run the backdoor search of the policy's ``[backdoor]`` section on prepared samples."""
    model = prep.model
    labels_only = threat == "labels" or not model.has_scores
    n_classes = model.n_classes or (int(max(prep.y.max(), prep.pred.max())) + 1 if len(prep.y) else 0)
    domain, z, box = prep.domain, prep.z, None
    if len(model.sample_shape) == 1 and len(prep.z):
        # tabular: search a box beyond the data (its range extended by IQRs) unless the feature bounds were given
        raw = prep.domain.from_unit(np.asarray(prep.z, dtype=np.float64))
        given = prep.domain_source == "given"
        lo, hi = extended_bounds(raw, prep.domain.lo if given else None, prep.domain.hi if given else None)
        lo = np.broadcast_to(lo, model.sample_shape).astype(np.float64)
        hi = np.broadcast_to(hi, model.sample_shape).astype(np.float64)
        domain = Domain(lo, hi)
        z = domain.to_unit(raw)
        box = (lo.reshape(-1), hi.reshape(-1))
    oracle = Oracle(model, domain, n_samples=1, budget=spec.budget, labels_only=labels_only)
    section = run_search(
        oracle, z, np.asarray(prep.y), np.asarray(prep.pred), feature_box=box,
        n_classes=n_classes, budget=spec.budget, time_limit_s=spec.time_limit_s,
        samples_per_class=spec.samples_per_class, full_search_classes=spec.full_search_classes,
        anomaly_threshold=spec.anomaly_threshold, seed=seed, progress=progress, out_dir=out_dir,
        class_labels=model.class_labels, null_file=null_file,
    )
    if prep.samples.synthetic:
        section.details["synthetic_samples"] = True
    return section


__all__ = ["search_backdoors"]

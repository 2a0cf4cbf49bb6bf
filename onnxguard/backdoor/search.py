"""The backdoor search: samples, pre-screen, per-class trigger searches, outlier statistic, report.

Order of work, all through one budgeted :class:`Probe`:

1. clean, correctly classified samples per class, split into a search part and a
   held-back part (the reversed triggers' success is measured on the held-back part);
2. images: a cheap pre-screen stamps a library of candidate patches on a few samples
   of every class; one pass scores every candidate target class, orders the classes
   and warm-starts the patch search;
2b. images: the decision-based square-patch sweep (:mod:`.squares`), the same cheap
   measurement for every class under either threat model (family ``square``);
3. per class, the zeroth-order mask search (``patch``) and blend search (``blend``),
   see :mod:`.zo`, each under its own deadline, an even share of the time left (on a slow model every class
   gets one; a class cut short is not "fully searched"); tabular inputs get the few-feature search of :mod:`.tabular`.
   With more classes than ``full_search_classes``, every class gets a short search
   first and only the most suspicious ones continue to the full search; the statistic of
   the mask families then compares the short-search sizes, which every class has;
2c. images: the smooth-global-pattern sweep (:mod:`.smooth`: SIG sinusoids,
   low-frequency fields), family ``smooth``;
2d. images: the warp search (:mod:`.warp`: WaNet-style smooth warps, NES over a coarse
   field's direction with an adaptive magnitude, a :data:`WARP_SHARE` of the budget and at most a
   :data:`WARP_TIME_SHARE` of the time limit; run with
   scores and a budget of at least :data:`WARP_MIN_BUDGET`, otherwise listed as not covered),
   family ``warp``;
2e. images with 4 or more classes, with scores and a budget of at least :data:`MARGIN_MIN_BUDGET`: the
   maximum-margin search (:mod:`.margin`, MM-BD: the largest score margin any input in the box reaches
   per class, a :data:`MARGIN_SHARE` of the budget and
   at most a :data:`MARGIN_TIME_SHARE` of the time limit), family ``margin``; it has no trigger to check
   on held-back samples (its evidence is the margin itself); its index is :func:`.anomaly.margin_indices`
   (``-log10 p``) times :func:`.anomaly.margin_scale` (it crosses the threshold at ``p < 0.001``);
4. per family, the MAD anomaly index over the classes' trigger sizes (with 2 or 3
   classes, the reference-ratio index of :func:`.anomaly.reference_indices`: for
   tabular inputs against the greedy search with natural feature values, for images
   against the natural square window and blend of :mod:`.natural`, regime
   ``few-image``); every family's reversed trigger of every class is checked on
   held-back samples (those queries are reserved before any search stage runs);
   a class's index is its largest family index among the families whose trigger
   works on held-back samples (:func:`.anomaly.class_indices`); the model's statistic is the
   largest index of such a class; a class is flagged when its index exceeds the
   threshold calibrated on clean models (:mod:`.null`), and the report gives the
   statistic's empirical p-value against that null.

Input-aware (sample-specific, dynamic) triggers are not searched for; the report
says so (``families_not_covered``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from ..attacks.base import to_chw
from ..oracle import Oracle
from ..report import BackdoorSection, ClassTrigger, Rate
from .anomaly import (
    UNCHECKED_FAMILIES,
    class_indices,
    family_indices,
    few_image_indices,
    margin_scale,
    model_statistic,
    reference_indices,
)
from .null import calibration
from .smooth import CENSOR as SMOOTH_CENSOR
from .smooth import SmoothTrigger, smooth_sweep
from ..outputs import OutputDir, as_output_dir
from ..png import image_png, to_display
from .natural import natural_references
from .probe import OutOfBudget, Probe
from .tabular import FeatureTrigger, candidate_values, search_features
from .squares import square_sweep
from .warp import WarpTrigger, warp_sweep
from .margin import RESTARTS, margin_sweep
from .triggers import box_trigger, patch_library, patch_sizes, prescreen, stamp
from .zo import ZOSearch

# the version of what the search measures: bump it with any change that can move a clean model's statistic (a
# family, a share, a rule). The shipped nulls record the version they were built by (benchmarks/backdoor_null.py);
# a scan whose version differs says that its threshold is not calibrated for it, and a test fails until the
# nulls are rebuilt (tests/backdoor/test_calibration.py)
SEARCH_VERSION = 1
SUCCESS_TARGET = 0.9  # a reversed trigger "works" when it sends this share of other-class samples to the target
MIN_HELD_OUT_SUCCESS = 0.5  # a flagged trigger must also work on held-back samples
PRESCREEN_SHARE = 0.08  # share of the query budget for the patch pre-screen
SHORT_SHARE = 0.25  # the short search's share of a full search, when not every class gets the full search
SQUARE_CONFIRM = 4  # samples per class on which the square sweep confirms its best candidates
SQUARE_REFINE = 2  # samples per class for the square sweep's pattern refinement (1 under budgets < 200k)
# cap of the square sweep's pattern refinement: uncapped, on 3x32x32 inputs (8 x 8 refined cells) it took 118k of
# a 300k budget and left the patch and blend searches ~1k queries per class, too few for the blend search to move
SQUARE_REFINE_SHARE = 0.3
# the held-back check's expected time kept from the search stages, at most this share of the time limit (a 224x224
# model at ~17 queries/s would need more than the whole limit for 3,000 reserved queries); the check itself is
# bounded by its queries and what it runs past the limit is recorded
HELD_BACK_TIME_SHARE = 0.2
SMALL_RUNGS_MIN_BUDGET = 200_000  # below it the square sweep goes without its 2x2 and 3x3 rungs (squares.ladder)
MAX_FEATURES = 6  # tabular triggers larger than this are not searched further
MANY_CLASSES = 100  # from this many classes on, only the pre-screen's choice gets the per-class searches
SCREEN_SAMPLES = 64  # many classes: samples on which the sweeps screen (a fixed number, not one per class)
FEW_CLASSES = 3  # at most this many classes: the reference-ratio statistic instead of a MAD across classes
# few-class images: family -> its natural reference (:mod:`.natural`). The patch family's soft mask (L1 of values
# in [0, 1]) is not a window area: on clean 2-class digits models it came out 20x under the natural window
# (index ~4.5, the same as a planted 2x2 patch), so it is reported but not scored; smooth has no natural counterpart
FEW_IMAGE_REFERENCE = {"square": "square", "blend": "blend"}
FEW_IMAGE_RESERVE = 0.01  # few-class images: share of the budget kept back beyond the held-back check's own queries
WARP_SHARE = 0.2  # share of the query budget for the warp search (split evenly over the classes it searches)
# ... and at most this share of the time limit: on a slow model (a 3x224x224 input) the warp search ran to the time
# limit and the mask searches after it got no time at all (the null's models never reach it: their scans are budget-bound)
WARP_TIME_SHARE = 0.2
WARP_MIN_BUDGET = 200_000  # below this budget (or under labels only) the warp search is not run: the mask searches need it all
MARGIN_SHARE = 0.1  # share of the query budget for the maximum-margin search (images, 4+ classes, scores)
MARGIN_TIME_SHARE = 0.15  # ... and of the time limit, at most (on a slow model its queries would take the whole limit)
MARGIN_MIN_BUDGET = 200_000  # below it the margin search is not run: at 100k the sweeps and it left the mask searches nothing
MARGIN_NOT_RUN = ("maximum-margin statistic (MM-BD): not run in this scan (it runs with scores and a budget of at least "
                  f"{MARGIN_MIN_BUDGET:,} queries)")
MASK_GRID = 32  # the zeroth-order mask and pattern live on at most a 32 x 32 grid (coarse cells on large inputs)
WARP_NOT_RUN = ("warping triggers (WaNet): not searched in this scan (the warp search runs with scores and a budget of at "
                f"least {WARP_MIN_BUDGET:,} queries)")
NOT_COVERED = {
    "input-aware": "sample-specific (input-aware, dynamic) triggers: no search family",
}


def _split(y: np.ndarray, ok: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    search, held = [], []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(ok & (y == c)))[:per_class]
        if len(idx) == 0:
            continue
        k = max(1, len(idx) // 3) if len(idx) >= 2 else 0
        held.append(idx[:k])
        search.append(idx[k:])
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)  # noqa: E731
    return cat(search), cat(held)


def _per_class(x: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``k`` samples of every class present."""
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)])
    return x[idx], y[idx]


class _ClassMeans:
    """Each class's mean sample, computed when first asked for (many classes x large inputs stay cheap)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y, self.cache = x, y, {}

    def __getitem__(self, c: int) -> np.ndarray:
        if c not in self.cache:
            sel = self.y == c
            self.cache[c] = self.x[sel].mean(axis=0) if sel.any() else np.full(self.x.shape[1:], 0.5)
        return self.cache[c]


def _class_means(x: np.ndarray, y: np.ndarray, n_classes: int) -> _ClassMeans:
    return _ClassMeans(x, y)


def _interleave(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices ordering samples round-robin over classes (a class-balanced prefix)."""
    groups = [list(rng.permutation(np.flatnonzero(y == c))) for c in np.unique(y)]
    out = []
    while any(groups):
        for g in groups:
            if g:
                out.append(g.pop())
    return np.array(out, dtype=np.int64)


def _not_run(reason: str, threat: str, budget: int) -> BackdoorSection:
    return BackdoorSection(status="not_run", reason=reason, threat_model=threat, query_budget=budget)  # type: ignore[arg-type]


def _regime(tabular: bool, n_classes: int) -> str:
    if n_classes <= FEW_CLASSES:
        return "few" if tabular else "few-image"
    return "tabular" if tabular else "image"


def run_search(
    oracle: Oracle,
    z: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    *,
    n_classes: int,
    budget: int,
    time_limit_s: float,
    samples_per_class: int,
    full_search_classes: int,
    anomaly_threshold: float | None,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    out_dir: Path | None = None,
    class_labels: list | None = None,
    feature_box: tuple[np.ndarray, np.ndarray] | None = None,
    null_file: Path | None = None,
) -> BackdoorSection:
    """The whole search. ``feature_box`` (tabular): the raw-unit bounds of the normalised search box,
    so that reversed triggers are reported in the data's units. ``anomaly_threshold`` None: calibrated."""
    t0 = time.perf_counter()
    threat = "labels" if oracle.labels_only else "scores"
    rng = np.random.default_rng([seed, 5])
    shape = oracle.sample_shape
    tabular = len(shape) == 1
    x = to_chw(np.asarray(z, dtype=np.float64), shape)
    ok = (pred == y) & (y >= 0) & (y < n_classes)
    s_idx, h_idx = _split(y, ok, n_classes, samples_per_class, rng)
    present = sorted(set(y[s_idx].tolist()))
    if n_classes < 2 or len(present) < min(n_classes, 3) or len(present) < 2:
        why = f"the search needs correctly classified samples of at least {min(max(n_classes, 2), 3)} classes (found {len(present)} of {n_classes})"
        return _not_run(why, threat, budget)
    regime = _regime(tabular, n_classes)
    settings = {"budget": budget, "samples_per_class": samples_per_class, "full_search_classes": full_search_classes,
                "threat_model": threat, "search_version": SEARCH_VERSION}
    cal = calibration(regime, anomaly_threshold, settings=settings, **({"path": null_file} if null_file else {}))
    threshold = cal.threshold
    m_scale = margin_scale(threshold)  # the margin family's -log10 p on the common scale (anomaly.py)

    def fam_index(v: np.ndarray, fam: str) -> np.ndarray:
        return family_indices(v, fam) * (m_scale if fam == "margin" else 1.0)
    xs, ys = x[s_idx], y[s_idx]
    xh, yh = x[h_idx], y[h_idx]
    probe = Probe(oracle, t0 + time_limit_s, max_time_reserve=HELD_BACK_TIME_SHARE * time_limit_s)
    ort0 = oracle.ort_time
    classes = list(range(n_classes))
    report_progress = (lambda: progress(min(probe.used, budget), budget)) if progress else (lambda: None)
    stopped: str | None = None
    details: dict = {"samples_search": int(len(s_idx)), "samples_held_back": int(len(h_idx)), "success_target": SUCCESS_TARGET}

    sizes: dict[str, np.ndarray] = {}
    succ: dict[str, np.ndarray] = {}
    triggers: dict[tuple[int, str], object] = {}
    queries_per_class = np.zeros(n_classes, dtype=np.int64)
    full = np.zeros(n_classes, dtype=bool)
    pre = np.zeros(n_classes)
    searches: dict[tuple[int, str], ZOSearch] = {}
    stat_sizes: dict[str, np.ndarray] = {}  # sizes the statistic uses where they differ from the reported ones
    reference = np.full(n_classes, np.nan)  # few classes: the natural (in-data) change that reaches each class
    image_refs: dict[str, np.ndarray] = {}  # few-class images: natural reference per reference kind (square, blend)
    margin_inputs: dict[int, np.ndarray] = {}  # the margin search's input per class (saved for the classes it flags)
    warp_on = not tabular and not oracle.labels_only and budget >= WARP_MIN_BUDGET
    margin_on = regime == "image" and not oracle.labels_only and budget >= MARGIN_MIN_BUDGET
    image_families = ["patch", "blend", "square", "smooth"] + (["warp"] if warp_on else []) + (["margin"] if margin_on else [])
    families: list[str] = ["features"] if tabular else image_families
    # the held-back check of every class's triggers is paid for first: no search stage may spend its queries
    # (a zoo CNN's sweeps once spent the whole budget and eight classes went unchecked)
    # every family's trigger of every class that can get one (many classes: the searched ones), at most
    checked = n_classes if n_classes < MANY_CLASSES else min(n_classes, 2 * full_search_classes)
    probe.reserved = checked * len([f for f in families if f not in UNCHECKED_FAMILIES]) * len(xh)

    try:
        if tabular:
            families = ["features"]
            sizes["features"] = np.full(n_classes, np.nan)
            succ["features"] = np.zeros(n_classes)
            n_feat = shape[0]
            active = oracle.domain.width.reshape(-1) > 0
            per_class_q = budget // n_classes // (2 if regime == "few" else 1)
            full[:] = True
            flat = x.reshape(len(x), n_feat)
            q1, q3 = np.percentile(flat, [25, 75], axis=0)
            iqr = np.where(q3 > q1, q3 - q1, flat.max(axis=0) - flat.min(axis=0))
            values = candidate_values(flat, iqr)
            k_max = min(MAX_FEATURES, n_feat)
            for t in classes:
                pool = xs[ys != t]
                if len(pool) == 0:
                    continue
                tr = search_features(probe, pool, t, max_features=k_max, success_target=SUCCESS_TARGET,
                                     max_queries=per_class_q, active=active, values=values, where="feature search")
                sizes["features"][t] = tr.size if tr.curve else np.nan
                succ["features"][t] = tr.success
                queries_per_class[t] += tr.queries
                triggers[(t, "features")] = tr
                if regime == "few":
                    own = xs[ys == t].reshape(-1, n_feat)
                    if len(own):
                        paired = own[rng.integers(0, len(own), size=len(pool))]
                        ref = search_features(probe, pool, t, max_features=k_max, success_target=SUCCESS_TARGET,
                                              max_queries=per_class_q, active=active, paired=paired, where="reference search")
                        reference[t] = ref.size if ref.curve else np.nan
                        queries_per_class[t] += ref.queries
                report_progress()
            details["method_detail"] = ("greedy few-feature search over each feature's candidate values: 0.5 to 3 IQRs beyond "
                                        "the data's ends (within the given feature bounds, if any), the data's ends and rare in-range "
                                        "values; a feature's share of the size grows with its distance beyond the data (1 + IQRs / 2)")
            fs = sizes["features"]
            censored = np.isfinite(fs) & (fs > k_max)
            if regime != "few" and censored.sum() * 2 >= np.isfinite(fs).sum() > 0:
                # most classes cannot be reached within k_max features: their sizes are only "> k_max", so the
                # median and its spread are unknown and any class below the cap would look arbitrarily anomalous
                stat_sizes["features"] = np.full(n_classes, np.nan)
                details["statistic"] = (
                    f"undefined: {int(censored.sum())} of {int(np.isfinite(fs).sum())} classes cannot be reached by "
                    f"setting up to {k_max} features to candidate values, so no class is flagged on trigger size"
                )
        else:
            c, h, w = x.shape[1:]
            cell = max(1, -(-max(h, w) // MASK_GRID))
            details["mask_grid_cell"] = int(cell)
            lib = patch_library(c, h, w, seed=seed)
            order = _interleave(ys, rng)
            pre_budget = int(PRESCREEN_SHARE * budget)
            pre, pre_idx, pre_q = prescreen(probe, xs[order], ys[order], n_classes, lib, pre_budget)
            details["prescreen"] = {"patches": len(lib), "queries": int(pre_q), "best_success": [round(float(v), 3) for v in pre]}
            report_progress()
            searched: list[int] | None = None
            screen = _per_class(xs, ys, 1, rng)
            confirm = _per_class(xs, ys, SQUARE_CONFIRM, rng)
            refine = _per_class(xs, ys, SQUARE_REFINE if budget >= 200_000 else 1, rng)
            if n_classes >= MANY_CLASSES:
                # sub-linear in the number of classes: the pre-screen (a fixed share of the budget) picks the
                # most suspicious classes; they and as many random reference classes (for the statistic's median)
                # get the sweeps and the mask searches; every other class keeps its pre-screen figure only
                k = min(full_search_classes, n_classes)
                top = [int(t) for t in np.argsort(-pre, kind="stable")[:k]]
                others = [t for t in classes if t not in top and (ys == t).any()]
                ref = [int(t) for t in rng.permutation(others)[:k]] if others else []
                searched = sorted(top + ref)
                details["many_classes"] = {"suspects": sorted(top), "reference_classes": sorted(ref),
                                           "rule": f">= {MANY_CLASSES} classes: the pre-screen's {k} most suspicious classes and {len(ref)} random "
                                                   "reference classes get the sweeps and mask searches"}
                keep = lambda xy: (xy[0][np.isin(xy[1], searched)], xy[1][np.isin(xy[1], searched)])  # noqa: E731
                screen, confirm, refine = keep(screen), keep(confirm), keep(refine)
                sel = rng.permutation(len(xs))[:SCREEN_SAMPLES]
                screen = (np.concatenate([screen[0], xs[sel]]), np.concatenate([screen[1], ys[sel]]))
            # the square-patch sweep: the same cheap, decision-based size for every class
            families = image_families
            sq = square_sweep(probe, screen, confirm, n_classes,
                              _class_means(xs, ys, n_classes), level=SUCCESS_TARGET, refine_size=max(patch_sizes(h, w)),
                              refine_samples=refine, rng=rng, classes=searched,
                              refine_max_queries=int(SQUARE_REFINE_SHARE * budget),
                              small_rungs=budget >= SMALL_RUNGS_MIN_BUDGET)
            sizes["square"], succ["square"] = sq.area, sq.rate
            for t, trig in sq.triggers.items():
                triggers[(t, "square")] = trig
            details["square"] = {"queries": int(sq.queries), "refined_classes": int(sq.refined),
                                 "curves": {str(t): [[int(a), float(r)] for a, r in v] for t, v in sq.curve.items()}}
            report_progress()
            # smooth global patterns (SIG sinusoids, low-frequency fields)
            sm = smooth_sweep(probe, screen, confirm, n_classes, level=SUCCESS_TARGET, seed=seed, classes=searched)
            sizes["smooth"], succ["smooth"] = sm.amplitude, sm.rate
            for t, trig in sm.triggers.items():
                triggers[(t, "smooth")] = trig
            details["smooth"] = {"queries": int(sm.queries), "patterns": {str(t): v.name for t, v in sm.triggers.items()}}
            if sm.complete:  # classes out of the ladder's reach are censored (not left out, which would shrink the median)
                reach = np.array([(ys != t).any() and (ys == t).any() and (searched is None or t in searched) for t in classes])
                stat_sizes["smooth"] = np.where(np.isfinite(sm.amplitude), sm.amplitude, np.where(reach, SMOOTH_CENSOR, np.nan))
            report_progress()
            if margin_on:  # before the warp search: on a slow model the warp can run to the time limit; this stage has its own cap
                mr = _margin_stage(probe, xs, ys, n_classes, budget, time_limit_s, np.random.default_rng([seed, 9]), searched)
                sizes["margin"] = mr.margin  # no success rate: the margin family has no trigger (search_success None)
                margin_inputs = mr.inputs
                details["margin"] = {"queries": int(mr.queries), "steps_per_restart": int(mr.steps), "restarts": RESTARTS,
                                     "complete": mr.complete, "size_unit": "largest score margin reached (logits or log-probabilities)"}
                report_progress()
            if warp_on:
                # smooth warps (WaNet): per class, NES over a coarse warp field's direction with an adaptive magnitude
                warp_classes = searched if searched is not None else [t for t in classes if (ys == t).any()]
                wq = int(WARP_SHARE * budget) // max(1, len(warp_classes))
                with _stage_deadline(probe, WARP_TIME_SHARE * time_limit_s):
                    wp = warp_sweep(probe, screen, (xs, ys), n_classes, level=SUCCESS_TARGET, max_queries_per_class=wq,
                                    seed=seed, classes=warp_classes)
                sizes["warp"], succ["warp"] = wp.magnitude, wp.rate
                for t, trig in wp.triggers.items():
                    triggers[(t, "warp")] = trig
                for t, q in wp.queries_per_class.items():
                    queries_per_class[t] += q
                details["warp"] = {"queries": int(wp.queries), "queries_per_class_cap": int(wq), "size_unit": "RMS displacement (pixels)",
                                   "curves": {str(t): [[round(m, 4), round(r, 4)] for m, r in v] for t, v in wp.curves.items()}}
                # classes no warp reached within the ladder are left out of the warp statistic, not censored: on clean
                # models most classes are often out of reach, and a median at the censoring value with a collapsed MAD
                # would make every reached class look anomalous; leaving them out lowers the median (conservative)
            report_progress()
            if regime == "few-image":
                nat = natural_references(probe, xs, ys, n_classes, level=SUCCESS_TARGET, rng=rng,
                                         small_rungs=budget >= SMALL_RUNGS_MIN_BUDGET)
                image_refs = {"square": nat.area, "blend": nat.blend}
                details["natural_reference"] = {
                    "queries": int(nat.queries), "complete": nat.complete,
                    "square_curves": {str(t): [[int(a), float(r)] for a, r in v] for t, v in nat.curve.items()},
                    "blend_curves": {str(t): [[float(a), float(r)] for a, r in v] for t, v in nat.blend_curve.items()}}
                report_progress()
            cls_order = [int(t) for t in np.argsort(-pre, kind="stable") if searched is None or int(t) in searched]
            for t in cls_order:
                pool = xs[ys != t]
                if len(pool) == 0:
                    continue
                _, pr, pc, blk = lib[int(pre_idx[t])]
                pm, pp = box_trigger((c, h, w), pr, pc, blk)
                target_mean = xs[ys == t].mean(axis=0) if (ys == t).any() else np.full((c, h, w), 0.5)
                init_p = np.where(pm[None] > 0, pp, np.clip(target_mean, 0.2, 0.8))
                # labels only: start from a strong trigger (target-class mean blended in) so that the
                # 0/1 loss has a boundary to walk along; scores: start small and let the gradient grow it
                rest_m = 0.5 if oracle.labels_only else 0.05
                searches[(t, "patch")] = ZOSearch("patch", t, pool, oracle.labels_only, np.random.default_rng([seed, t, 1]),
                                                  init_mask=np.where(pm > 0, 0.7, rest_m), init_pattern=init_p, success_target=SUCCESS_TARGET,
                                                  cell=cell)
                searches[(t, "blend")] = ZOSearch("blend", t, pool, oracle.labels_only, np.random.default_rng([seed, t, 2]),
                                                  init_pattern=np.clip(target_mean, 0.2, 0.8) if oracle.labels_only else None,
                                                  init_alpha=0.6 if oracle.labels_only else 0.25, success_target=SUCCESS_TARGET,
                                                  cell=cell)
            n_c = len({t for t, _ in searches})
            k_full = min(full_search_classes, n_c)
            rest = probe.left  # net of the held-back check's reserve
            if regime == "few-image":  # its verdict rests on every class's held-back check: keep a margin
                rest -= int(FEW_IMAGE_RESERVE * budget)
            if k_full >= n_c:
                short = rest // max(1, 2 * n_c)
                extra = 0
            else:
                short = int(rest * SHORT_SHARE / (2 * (SHORT_SHARE * n_c + (1 - SHORT_SHARE) * k_full)))
                extra = int(short * (1 - SHORT_SHARE) / SHORT_SHARE)
            details["queries_short_search"] = int(short)
            details["queries_full_search"] = int(short + extra)
            if short <= 0 and searches:  # the sweeps left nothing: no class gets a mask search (none is "fully searched")
                raise OutOfBudget("query budget")
            # each search runs under its own deadline, an even share of the time left: on a slow model the first
            # class's search ran to the time limit and no other class got one (a 3x224x224 model); a search that
            # ends early leaves its time to the rest. Budget-bound searches (the null's) never reach their share.
            cut: set[int] = set()  # classes whose mask search its time share cut short: not "fully searched"

            def run_in_shares(todo: list[tuple[int, str]], queries: int, stop_when_spent: bool) -> None:
                for j, (t, fam) in enumerate(todo):
                    s = searches[(t, fam)]
                    before, n_stops = s.queries, len(probe.stops)
                    with _stage_deadline(probe, max(0.0, probe.time_left()) / (len(todo) - j)):
                        s.run(probe, queries)
                    if len(probe.stops) > n_stops:
                        cut.add(t)
                    queries_per_class[t] += s.queries - before
                    report_progress()
                    if stop_when_spent and (probe.left <= 0 or probe.time_left() <= 0):
                        raise OutOfBudget("query budget" if probe.left <= 0 else "time limit")

            run_in_shares([(t, fam) for t in cls_order for fam in ("patch", "blend") if (t, fam) in searches], short, True)
            if extra > 0:
                est = {fam: np.array([searches[(t, fam)].estimated_size() if (t, fam) in searches else np.nan for t in classes]) for fam in ("patch", "blend")}
                # like with like: with a reduced search the statistic of the mask families compares every
                # class's short-search size (the same budget for all); the full search refines the triggers
                stat_sizes.update(est)
                details["statistic_on"] = "short-search sizes (patch, blend); sweep sizes (square, smooth, warp)"
                est["square"] = sizes["square"]
                est["smooth"] = stat_sizes.get("smooth", sizes["smooth"])
                if warp_on:
                    est["warp"] = sizes["warp"]
                if margin_on:
                    est["margin"] = sizes["margin"]
                with np.errstate(all="ignore"):
                    ai = class_indices(np.stack([fam_index(est[f], f) for f in est]))
                rank = np.lexsort((-pre, -np.nan_to_num(ai, nan=-np.inf)))
                chosen = [int(t) for t in rank if (int(t), "patch") in searches][:k_full]
                run_in_shares([(t, fam) for t in chosen for fam in ("patch", "blend")], extra, False)
                for t in chosen:
                    full[t] = t not in cut
            else:
                for t, _ in searches:
                    full[t] = t not in cut
    except OutOfBudget as exc:
        stopped = exc.reason
        probe.stopped("search stages (after the pre-screen)" if not tabular else "feature search", exc.reason)

    if not tabular:
        for fam in ("patch", "blend"):
            sizes[fam] = np.full(n_classes, np.nan)
            succ[fam] = np.zeros(n_classes)
        for (t, fam), s in searches.items():
            if s.steps == 0:
                continue
            sizes[fam][t] = s.estimated_size()
            succ[fam][t] = s.best.success
            if s.best.mask is not None:
                triggers[(t, fam)] = (s.best.mask, s.best.pattern)
            else:
                triggers[(t, fam)] = (s.mask(), s.pattern())

    # -- the statistic ----------------------------------------------------------
    for fam in families:
        sizes.setdefault(fam, np.full(n_classes, np.nan))
        succ.setdefault(fam, np.zeros(n_classes))
    if regime == "few":
        ai_fam = {fam: reference_indices(sizes[fam], reference) for fam in families}
        details["statistic"] = details.get("statistic") or (
            "reference ratio: log2(natural change / reversed trigger), the natural change being the same greedy search "
            "with each feature taken from a clean sample of the class")
        details["reference_sizes"] = [None if not np.isfinite(v) else round(float(v), 4) for v in reference]
    elif regime == "few-image":
        nan = np.full(n_classes, np.nan)
        ai_fam = {fam: few_image_indices(sizes[fam], image_refs.get(FEW_IMAGE_REFERENCE.get(fam, ""), nan)) for fam in families}
        details["statistic"] = (
            "reference ratio: per family, the smaller of log2(natural change / reversed trigger) and log2(other classes' "
            "median reversed trigger / reversed trigger), the natural change being the smallest square window (the square "
            "sweep's ladder and positions) filled with a paired clean sample of the class (for square), or the smallest "
            "blend towards it (for blend); patch (a soft mask) and smooth: reported, not scored")
        details["reference_sizes"] = {k: [None if not np.isfinite(v) else round(float(v), 4) for v in arr] for k, arr in image_refs.items()}
    else:
        ai_fam = {fam: fam_index(stat_sizes.get(fam, sizes[fam]), fam) for fam in families}
        if "margin" in ai_fam:  # (the stage may not have run: a stop before it)
            raw = family_indices(stat_sizes.get("margin", sizes["margin"]), "margin")
            details.setdefault("margin", {"queries": 0, "complete": False})
            details["margin"]["index_scale"] = round(m_scale, 6)
            details["margin"]["neg_log10_p"] = [None if not np.isfinite(v) else round(float(v), 4) for v in raw]
    stack = np.stack([ai_fam[f] for f in families])
    # a class's index and kind come from the families that reversed a trigger for it (a censored size has no trigger)
    has = np.stack([np.isfinite(sizes[f]) for f in families])
    stack = np.where(has | ~has.any(axis=0, keepdims=True), stack, np.nan)

    # -- held-back success of every family's reversed trigger: every class's most anomalous family first,
    # then every class's second, ... (a time stop keeps the checks that matter most) ------------------------
    held: dict[tuple[int, str], Rate] = {}
    probe.reserved = 0
    todo = []
    for t in classes:
        order = np.argsort(-np.where(np.isfinite(stack[:, t]), stack[:, t], -np.inf), kind="stable")
        todo += [(rank, t, int(i)) for rank, i in enumerate(order) if np.isfinite(stack[i, t]) and (t, families[int(i)]) in triggers]
    # the check is bounded by its reserved queries, not by the time limit: the stages before it stopped short of
    # the deadline by the reserve's expected time (up to their last step's overrun), and what it runs past the
    # limit is recorded
    deadline, probe.deadline = probe.deadline, float("inf")
    try:
        for _, t, i in sorted(todo):
            xo = xh[yh != t]
            if len(xo) == 0:
                continue
            fam = families[i]
            trig = triggers[(t, fam)]
            probe.check(len(xo))
            xt = trig.apply(xo) if hasattr(trig, "apply") else stamp(xo, *trig)  # type: ignore[misc, attr-defined]
            _, lab = probe.run(xt)
            queries_per_class[t] += len(xo)
            held[(t, fam)] = Rate.of(int((lab == t).sum()), int(len(xo)))
    except OutOfBudget as exc:
        stopped = stopped or exc.reason
        probe.stopped("held-back check", exc.reason)
    past = time.perf_counter() - deadline
    probe.deadline = deadline
    if past > 0:
        details["held_back_check_past_time_limit_s"] = round(past, 3)

    # the margin family has no trigger to check: its evidence is the margin itself (measured is "works")
    works = np.array([[np.isfinite(sizes[f][t]) if f in UNCHECKED_FAMILIES else
                       (t, f) in held and (held[(t, f)].value or 0.0) >= MIN_HELD_OUT_SUCCESS for t in classes] for f in families])
    # a class's index is its largest family index among the families whose trigger works on held-back
    # samples (see anomaly.py); its kind (the trigger reported) is that family
    ms = model_statistic(stack, works)
    cls_ai = ms.class_index
    kind_idx = np.argmax(np.where(np.isfinite(stack) & (works | ~works.any(axis=0, keepdims=True)), stack, -np.inf), axis=0)
    flagged = ms.flagged(threshold)

    files: list[str] = []
    if out_dir is not None:
        files = _save(out_dir, triggers, classes, families, kind_idx, tabular, xh if len(xh) else xs, feature_box, margin_inputs)

    rows = []
    for t in classes:
        fam = families[int(kind_idx[t])]
        size = sizes[fam][t]
        trig = triggers.get((t, fam))
        rows.append(ClassTrigger(
            cls=t,
            label=str(class_labels[t]) if class_labels and t < len(class_labels) else None,
            full_search=bool(full[t]),
            trigger_size=float(size) if np.isfinite(size) else None,
            trigger_kind=fam if np.isfinite(size) else None,
            attack_success=held.get((t, fam)),
            family_attack_success={f: held[(t, f)] for f in families if (t, f) in held},
            anomaly_index=float(cls_ai[t]) if np.isfinite(cls_ai[t]) else None,
            p_value=cal.p_value(float(cls_ai[t])) if np.isfinite(cls_ai[t]) else None,
            queries=int(queries_per_class[t]),
            family_sizes={f: round(float(sizes[f][t]), 4) for f in families if np.isfinite(sizes[f][t])},
            family_anomaly_indices={f: round(float(ai_fam[f][t]), 4) for f in families if np.isfinite(ai_fam[f][t])},
            search_success=round(float(succ[fam][t]), 4) if fam not in UNCHECKED_FAMILIES else None,
            prescreen_success=round(float(pre[t]), 4) if not tabular else None,
            trigger_features=_raw_features(trig, feature_box) if isinstance(trig, FeatureTrigger) and trig.features else None,
            reference_size=_reference_of(t, fam, reference, image_refs),
        ))
    # no class's reversed trigger works on held-back samples: nothing is evidence of a backdoor (min(0, ...))
    max_ai, unvalidated_max = ms.statistic, ms.unvalidated_max
    details["early_stops"] = probe.stops
    if stopped:
        details["stopped_by"] = stopped
    details["ort_time_s"] = oracle.ort_time - ort0
    details["families"] = families
    details["min_held_back_success"] = MIN_HELD_OUT_SUCCESS
    details["calibration"] = cal.as_dict()
    if unvalidated_max is not None and max_ai is not None and unvalidated_max > max_ai:
        details["largest_index_not_validated"] = round(unvalidated_max, 4)
    common = dict(threat_model=threat, queries=probe.used, query_budget=budget, families_searched=families,
                  families_not_covered=[] if tabular else [v for v in NOT_COVERED.values()] + ([] if warp_on else [WARP_NOT_RUN])
                  + ([MARGIN_NOT_RUN] if regime == "image" and not margin_on else []), statistic_regime=regime,
                  early_stops=[f"{d['where']}: {d['reason']} (after {d['queries_used']} queries)" for d in probe.stops])
    if max_ai is None:
        why = details.get("statistic") or f"no class's trigger size could be measured ({stopped or 'no samples'})"
        if probe.stops:
            why += f"; the search stopped early {len(probe.stops)} time(s), first at {probe.stops[0]['where']} ({probe.stops[0]['reason']})"
        return BackdoorSection(status="failed", reason=why, wall_time_s=time.perf_counter() - t0, details=details, classes=rows,
                               **common)  # type: ignore[arg-type]
    p_model = cal.p_value(max_ai)
    unit = "features" if tabular else "trigger size"
    ptxt = f"; p = {p_model:.3g} against {cal.n} clean models" if p_model is not None else "; no calibrated null for this kind of model"
    thr_txt = f"{threshold:.3g} ({cal.source}{f', false-positive rate {cal.fpr:.0%} on the null' if cal.fpr is not None else ''})"
    if flagged and rows[flagged[0]].trigger_kind == "margin":
        f0 = flagged[0]
        others = np.delete(sizes["margin"], f0)
        finding = (f"class(es) {', '.join(map(str, flagged))} flagged: an input reaches a score margin of {rows[f0].trigger_size:.3g} for "
                   f"class {f0}, against a median of {float(np.nanmedian(others)):.3g} over the other classes' largest margins "
                   f"(maximum-margin statistic, MM-BD: anomaly index {cls_ai[f0]:.2f} > threshold {thr_txt}{ptxt})")
    elif flagged:
        f0 = flagged[0]
        finding = (f"class(es) {', '.join(map(str, flagged))} flagged: class {f0}'s reversed {rows[f0].trigger_kind} trigger is anomalously small "
                   f"(anomaly index {cls_ai[f0]:.2f} > threshold {thr_txt}{ptxt}; size {rows[f0].trigger_size:.3g} {unit}) and sends "
                   f"{rows[f0].attack_success.successes} of {rows[f0].attack_success.n} held-back samples of other classes to it")  # type: ignore[union-attr]
    else:
        finding = (f"no class has an anomalously small trigger that works on held-back samples (largest such anomaly index "
                   f"{max_ai:.2f} <= threshold {thr_txt}{ptxt}); this is not a proof that no backdoor exists")
        if "largest_index_not_validated" in details:
            finding += f" (index {unvalidated_max:.2f} was reached by a trigger that failed on held-back samples)"
    if cal.differs and cal.source == "null":
        finding += (f"; the threshold comes from a null built under other search settings ({', '.join(cal.differs)} differ), "
                    "so its false-positive rate is not calibrated for this scan")
    if stopped or probe.stops:
        finding += f"; the search stopped early {len(probe.stops)} time(s), first at {probe.stops[0]['where']} ({probe.stops[0]['reason']})" if probe.stops else f"; the search stopped early on its {stopped}"
    if progress:
        progress(budget, budget)
    method = ("few-feature trigger search (beyond-range and rare in-range values)" if tabular else
              "Neural-Cleanse-style mask+pattern and blend searches with zeroth-order (antithetic) gradients, patch pre-screen, "
              "decision-based square-patch sweep, smooth-pattern sweep (SIG sinusoids, low-frequency fields)"
              + (", warp search (WaNet: NES over a 4x4 control-grid warp field's direction, adaptive magnitude)" if warp_on else "")
              + (", maximum-margin search (MM-BD: the largest score margin per class, random search over the input box)" if margin_on else "")
              + ("; 2-3 classes: each class's trigger against the natural square window and blend of paired clean "
                 "samples of the class (reference ratio)" if regime == "few-image" else ""))
    return BackdoorSection(
        status="completed",
        method=method + ("; labels-only loss" if oracle.labels_only else "; cross-entropy on scores"),
        classes=rows,
        flagged_classes=flagged,
        anomaly_threshold=threshold,
        max_anomaly_index=max_ai,
        p_value=p_model,
        fully_searched_classes=[t for t in classes if full[t]],
        trigger_files=files,
        wall_time_s=time.perf_counter() - t0,
        finding=finding,
        details=details,
        **common,  # type: ignore[arg-type]
    )


@contextmanager
def _stage_deadline(probe: Probe, seconds: float) -> Iterator[None]:
    """A stage's own deadline: at most ``seconds`` from now (never past the search's). It adds the held-back
    reserve's expected time, which :meth:`Probe.time_left` takes off again (else a slow model's reserve would eat
    the whole share). The search's deadline is restored after the stage, however it ends."""
    deadline = probe.deadline
    reserve_t = min(probe.query_time(probe.reserved), probe.max_time_reserve)
    probe.deadline = min(deadline, time.perf_counter() + seconds + reserve_t)
    try:
        yield
    finally:
        probe.deadline = deadline


def _margin_stage(probe: Probe, xs: np.ndarray, ys: np.ndarray, n_classes: int, budget: int, time_limit_s: float,
                  rng: np.random.Generator, searched: list[int] | None):
    """The maximum-margin search within its share of the budget and of the time limit."""
    with _stage_deadline(probe, MARGIN_TIME_SHARE * time_limit_s):
        return margin_sweep(probe, xs, ys, n_classes, max_queries=min(int(MARGIN_SHARE * budget), probe.left), rng=rng,
                            classes=searched if searched is not None else [t for t in range(n_classes) if (ys == t).any()])


def _reference_of(t: int, fam: str, reference: np.ndarray, image_refs: dict[str, np.ndarray]) -> float | None:
    """Class ``t``'s natural reference for its trigger family (tabular: the feature search's; images: :mod:`.natural`)."""
    ref = image_refs[FEW_IMAGE_REFERENCE[fam]][t] if fam in FEW_IMAGE_REFERENCE and FEW_IMAGE_REFERENCE[fam] in image_refs else reference[t]
    return float(ref) if np.isfinite(ref) else None


def _raw_features(trig: FeatureTrigger, box: tuple[np.ndarray, np.ndarray] | None) -> list[dict]:
    """A feature trigger in the data's own units."""
    out = []
    for f, v, kind in zip(trig.features, trig.values, trig.kinds or ["?"] * len(trig.features)):
        raw = float(box[0][f] + v * (box[1][f] - box[0][f])) if box is not None else None
        out.append({"feature": int(f), "value": raw, "normalised": round(float(v), 6), "kind": kind})
    return out


def _save(out_dir: "Path | OutputDir", triggers: dict, classes: list[int], families: list[str], kind_idx: np.ndarray, tabular: bool,
          examples: np.ndarray, feature_box: tuple[np.ndarray, np.ndarray] | None = None,
          margin_inputs: dict[int, np.ndarray] | None = None) -> list[str]:
    out = as_output_dir(out_dir, "--backdoor-out")
    assert out is not None
    out.ensure()
    files = []
    for t in classes:
        fam = families[int(kind_idx[t])]
        if fam == "margin" and margin_inputs and t in margin_inputs:
            # the input that reached the class's largest margin: MM-BD's maximiser often shows the trigger
            xm = margin_inputs[t]
            files.append(str(out.write(f"class{t}-margin.npy", lambda fh, a=xm: np.save(fh, a))))
            files.append(str(out.write(f"class{t}-margin.png", image_png(to_display(xm), scale=max(1, 128 // max(xm.shape[1], 1))))))
            continue
        trig = triggers.get((t, fam))
        if trig is None:
            continue
        npy = f"class{t}-{fam}.npy"
        if isinstance(trig, FeatureTrigger):
            arr = trig.as_array()  # row 0: feature indices, row 1: normalised values, row 2: raw values
            if feature_box is not None:
                f = arr[0].astype(int)
                arr = np.vstack([arr, feature_box[0][f] + arr[1] * (feature_box[1][f] - feature_box[0][f])])
            files.append(str(out.write(npy, lambda fh, a=arr: np.save(fh, a))))
            continue
        if isinstance(trig, WarpTrigger):
            d = trig.delta()  # the displacement field (2, H, W) in pixels: rows, columns
            files.append(str(out.write(npy, lambda fh, a=d: np.save(fh, a))))
            ex0 = examples[:1]
            ex = trig.apply(ex0)[0]
            span = max(float(np.abs(d).max()), 1e-9)
            rows_, cols_ = to_display(d[:1] / (2 * span) + 0.5), to_display(d[1:] / (2 * span) + 0.5)
            shown = [to_display(ex0[0]), to_display(ex), to_display(np.abs(ex - ex0[0]).clip(0, 1))]
            if shown[0].ndim == 3:  # colour examples: show the field's panels in grey on three channels
                rows_, cols_ = (np.repeat(p_[..., None], 3, axis=2) for p_ in (rows_, cols_))
            gap = np.ones((d.shape[1], 1) + shown[0].shape[2:]) * 0.5
            parts = [rows_, gap, cols_, gap, shown[0], gap, shown[1], gap, shown[2]]
            img = np.concatenate(parts, axis=1)
            files.append(str(out.write(f"class{t}-{fam}.png", image_png(img, scale=max(1, 128 // max(d.shape[1], 1))))))
            continue
        if isinstance(trig, SmoothTrigger):
            d = trig.delta()  # the additive pattern (C, H, W), normalised units
            files.append(str(out.write(npy, lambda fh, a=d: np.save(fh, a))))
            ex = trig.apply(examples[:1])[0]
            img = np.concatenate([to_display(d / 2 + 0.5), np.ones((d.shape[1], 1) + to_display(d).shape[2:]) * 0.5, to_display(ex)], axis=1)
            files.append(str(out.write(f"class{t}-{fam}.png", image_png(img, scale=max(1, 128 // max(d.shape[1], 1))))))
            continue
        m, p = trig
        mask = np.broadcast_to(np.asarray(m, dtype=np.float64).reshape(1, *p.shape[1:]), p.shape)
        stacked = np.stack([mask, p])  # [0]: mask, [1]: pattern, each (C, H, W) normalised
        files.append(str(out.write(npy, lambda fh, a=stacked: np.save(fh, a))))
        ex = stamp(examples[:1], m, p)[0]
        panels = [to_display(mask), to_display(mask * p), to_display(ex)]
        gap = np.ones((panels[0].shape[0], 1) + panels[0].shape[2:]) * 0.5
        img = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
        scale = max(1, 128 // max(p.shape[1], 1))
        files.append(str(out.write(f"class{t}-{fam}.png", image_png(img, scale=scale))))
    return files

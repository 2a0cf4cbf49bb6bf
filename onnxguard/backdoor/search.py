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
   see :mod:`.zo`; tabular inputs get the few-feature search of :mod:`.tabular`.
   With more classes than ``full_search_classes``, every class gets a short search
   first and only the most suspicious ones continue to the full search; the statistic of
   the mask families then compares the short-search sizes, which every class has;
4. per family, the MAD anomaly index over the classes' trigger sizes; a class is
   flagged when its index reaches the threshold and its reversed trigger works on
   held-back samples.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..attacks.base import to_chw
from ..oracle import Oracle
from ..report import BackdoorSection, ClassTrigger, Rate
from .anomaly import family_indices
from ..outputs import OutputDir, as_output_dir
from ..png import image_png, to_display
from .probe import OutOfBudget, Probe
from .tabular import FeatureTrigger, search_features
from .squares import square_sweep
from .triggers import patch_library, patch_sizes, prescreen, stamp
from .zo import ZOSearch

SUCCESS_TARGET = 0.9  # a reversed trigger "works" when it sends this share of other-class samples to the target
MIN_HELD_OUT_SUCCESS = 0.5  # a flagged trigger must also work on held-back samples
PRESCREEN_SHARE = 0.08  # share of the query budget for the patch pre-screen
SHORT_SHARE = 0.25  # the short search's share of a full search, when not every class gets the full search
SQUARE_CONFIRM = 4  # samples per class on which the square sweep confirms its best candidates
SQUARE_REFINE = 2  # samples per class for the square sweep's pattern refinement (1 under budgets < 200k)
MAX_FEATURES = 6  # tabular triggers larger than this are not searched further


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


def _class_means(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.stack([x[y == c].mean(axis=0) if (y == c).any() else np.full(x.shape[1:], 0.5) for c in range(n_classes)])


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
    anomaly_threshold: float,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    out_dir: Path | None = None,
    class_labels: list | None = None,
) -> BackdoorSection:
    t0 = time.perf_counter()
    threat = "labels" if oracle.labels_only else "scores"
    rng = np.random.default_rng([seed, 5])
    shape = oracle.sample_shape
    tabular = len(shape) == 1
    x = to_chw(np.asarray(z, dtype=np.float64), shape)
    ok = (pred == y) & (y >= 0) & (y < n_classes)
    s_idx, h_idx = _split(y, ok, n_classes, samples_per_class, rng)
    present = sorted(set(y[s_idx].tolist()))
    if len(present) < 3 or n_classes < 3:
        why = f"the search needs correctly classified samples of at least 3 classes (found {len(present)} of {n_classes})"
        if n_classes < 3:
            why = f"the outlier statistic needs at least 3 classes; the model has {n_classes}"
        return _not_run(why, threat, budget)
    xs, ys = x[s_idx], y[s_idx]
    xh, yh = x[h_idx], y[h_idx]
    probe = Probe(oracle, t0 + time_limit_s)
    ort0 = oracle.ort_time
    classes = list(range(n_classes))
    report_progress = (lambda: progress(min(probe.used, budget), budget)) if progress else (lambda: None)
    stopped: str | None = None
    details: dict = {"samples_search": int(len(s_idx)), "samples_held_back": int(len(h_idx)), "success_target": SUCCESS_TARGET}

    sizes: dict[str, np.ndarray] = {}
    succ: dict[str, np.ndarray] = {}
    triggers: dict[tuple[int, str], tuple[np.ndarray, np.ndarray] | FeatureTrigger] = {}
    queries_per_class = np.zeros(n_classes, dtype=np.int64)
    full = np.zeros(n_classes, dtype=bool)
    pre = np.zeros(n_classes)
    searches: dict[tuple[int, str], ZOSearch] = {}
    stat_sizes: dict[str, np.ndarray] = {}  # sizes the statistic uses where they differ from the reported ones

    try:
        if tabular:
            families = ["features"]
            sizes["features"] = np.full(n_classes, np.nan)
            succ["features"] = np.zeros(n_classes)
            n_feat = shape[0]
            active = oracle.domain.width.reshape(-1) > 0
            per_class_q = budget // n_classes
            full[:] = True
            for t in classes:
                pool = xs[ys != t]
                if len(pool) == 0:
                    continue
                tr = search_features(probe, pool, t, max_features=min(MAX_FEATURES, n_feat), success_target=SUCCESS_TARGET,
                                     max_queries=per_class_q, active=active)
                sizes["features"][t] = tr.size if tr.curve else np.nan
                succ["features"][t] = tr.success
                queries_per_class[t] += tr.queries
                triggers[(t, "features")] = tr
                report_progress()
            details["method_detail"] = "greedy few-feature search over the ends of each feature's valid range"
            k_max = min(MAX_FEATURES, n_feat)
            fs = sizes["features"]
            censored = np.isfinite(fs) & (fs > k_max)
            if censored.sum() * 2 >= np.isfinite(fs).sum() > 0:
                # most classes cannot be reached within k_max features: their sizes are only "> k_max", so the
                # median and its spread are unknown and any class below the cap would look arbitrarily anomalous
                stat_sizes["features"] = np.full(n_classes, np.nan)
                details["statistic"] = (
                    f"undefined: {int(censored.sum())} of {int(np.isfinite(fs).sum())} classes cannot be reached by "
                    f"setting up to {k_max} features to range ends, so no class is flagged on trigger size"
                )
        else:
            families = ["patch", "blend"]
            c, h, w = x.shape[1:]
            lib = patch_library(c, h, w, seed=seed)
            order = _interleave(ys, rng)
            pre_budget = int(PRESCREEN_SHARE * budget)
            pre, pre_idx, pre_q = prescreen(probe, xs[order], ys[order], n_classes, lib, pre_budget)
            details["prescreen"] = {"patches": len(lib), "queries": int(pre_q), "best_success": [round(float(v), 3) for v in pre]}
            report_progress()
            # the square-patch sweep: the same cheap, decision-based size for every class
            sq = square_sweep(probe, _per_class(xs, ys, 1, rng), _per_class(xs, ys, SQUARE_CONFIRM, rng), n_classes,
                              _class_means(xs, ys, n_classes), level=SUCCESS_TARGET, refine_size=max(patch_sizes(h, w)),
                              refine_samples=_per_class(xs, ys, SQUARE_REFINE if budget >= 200_000 else 1, rng), rng=rng)
            families = ["patch", "blend", "square"]
            sizes["square"], succ["square"] = sq.area, sq.rate
            for t, trig in sq.triggers.items():
                triggers[(t, "square")] = trig
            details["square"] = {"queries": int(sq.queries), "refined_classes": int(sq.refined),
                                 "curves": {str(t): [[int(a), float(r)] for a, r in v] for t, v in sq.curve.items()}}
            report_progress()
            cls_order = [int(t) for t in np.argsort(-pre, kind="stable")]
            for t in cls_order:
                pool = xs[ys != t]
                if len(pool) == 0:
                    continue
                _, pm, pp = lib[int(pre_idx[t])]
                target_mean = xs[ys == t].mean(axis=0) if (ys == t).any() else np.full((c, h, w), 0.5)
                init_p = np.where(pm[None] > 0, pp, np.clip(target_mean, 0.2, 0.8))
                # labels only: start from a strong trigger (target-class mean blended in) so that the
                # 0/1 loss has a boundary to walk along; scores: start small and let the gradient grow it
                rest_m = 0.5 if oracle.labels_only else 0.05
                searches[(t, "patch")] = ZOSearch("patch", t, pool, oracle.labels_only, np.random.default_rng([seed, t, 1]),
                                                  init_mask=np.where(pm > 0, 0.7, rest_m), init_pattern=init_p, success_target=SUCCESS_TARGET)
                searches[(t, "blend")] = ZOSearch("blend", t, pool, oracle.labels_only, np.random.default_rng([seed, t, 2]),
                                                  init_pattern=np.clip(target_mean, 0.2, 0.8) if oracle.labels_only else None,
                                                  init_alpha=0.6 if oracle.labels_only else 0.25, success_target=SUCCESS_TARGET)
            n_c = len({t for t, _ in searches})
            k_full = min(full_search_classes, n_c)
            rest = probe.left - n_classes * len(xh)  # kept for the held-back check of every class's trigger
            if k_full >= n_c:
                short = rest // max(1, 2 * n_c)
                extra = 0
            else:
                short = int(rest * SHORT_SHARE / (2 * (SHORT_SHARE * n_c + (1 - SHORT_SHARE) * k_full)))
                extra = int(short * (1 - SHORT_SHARE) / SHORT_SHARE)
            details["queries_short_search"] = int(short)
            details["queries_full_search"] = int(short + extra)
            for t in cls_order:
                for fam in ("patch", "blend"):
                    if (t, fam) in searches:
                        s = searches[(t, fam)]
                        s.run(probe, short)
                        queries_per_class[t] += s.queries
                report_progress()
                if probe.left <= 0 or probe.time_left() <= 0:
                    raise OutOfBudget("query budget" if probe.left <= 0 else "time limit")
            if extra > 0:
                est = {fam: np.array([searches[(t, fam)].estimated_size() if (t, fam) in searches else np.nan for t in classes]) for fam in ("patch", "blend")}
                # like with like: with a reduced search the statistic of the mask families compares every
                # class's short-search size (the same budget for all); the full search refines the triggers
                stat_sizes.update(est)
                details["statistic_on"] = "short-search sizes (patch, blend); sweep areas (square)"
                est["square"] = sizes["square"]
                with np.errstate(all="ignore"):
                    ai = np.nanmax(np.stack([family_indices(est[f], f) for f in est]), axis=0)
                rank = np.lexsort((-pre, -np.nan_to_num(ai, nan=-np.inf)))
                chosen = [int(t) for t in rank if (int(t), "patch") in searches][:k_full]
                for t in chosen:
                    full[t] = True
                    for fam in ("patch", "blend"):
                        s = searches[(t, fam)]
                        before = s.queries
                        s.run(probe, extra)
                        queries_per_class[t] += s.queries - before
                    report_progress()
            else:
                for t, _ in searches:
                    full[t] = True
    except OutOfBudget as exc:
        stopped = exc.reason

    if not tabular:
        families = [f for f in ("patch", "blend", "square") if f in families or f != "square"]
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

    # -- the outlier statistic --------------------------------------------------
    for fam in families:
        sizes.setdefault(fam, np.full(n_classes, np.nan))
        succ.setdefault(fam, np.zeros(n_classes))
    ai_fam = {fam: family_indices(stat_sizes.get(fam, sizes[fam]), fam) for fam in families}
    stack = np.stack([ai_fam[f] for f in families])
    with np.errstate(all="ignore"):
        cls_ai = np.where(np.isnan(stack).all(axis=0), np.nan, np.nanmax(np.where(np.isnan(stack), -np.inf, stack), axis=0))
    kind_idx = np.argmax(np.where(np.isnan(stack), -np.inf, stack), axis=0)

    # -- held-back success of each class's reversed trigger ------------------------
    held: dict[int, Rate] = {}
    try:
        for t in classes:
            fam = families[int(kind_idx[t])]
            trig = triggers.get((t, fam))
            xo = xh[yh != t]
            if trig is None or len(xo) == 0:
                continue
            probe.check(len(xo))
            xt = trig.apply(xo) if isinstance(trig, FeatureTrigger) else stamp(xo, *trig)
            _, lab = probe.run(xt)
            queries_per_class[t] += len(xo)
            held[t] = Rate.of(int((lab == t).sum()), int(len(xo)))
    except OutOfBudget as exc:
        stopped = stopped or exc.reason

    flagged = [
        t for t in classes
        if np.isfinite(cls_ai[t]) and cls_ai[t] >= anomaly_threshold and t in held and (held[t].value or 0.0) >= MIN_HELD_OUT_SUCCESS
    ]
    flagged.sort(key=lambda t: -cls_ai[t])

    files: list[str] = []
    if out_dir is not None:
        files = _save(out_dir, triggers, classes, families, kind_idx, tabular, xh if len(xh) else xs)

    rows = []
    for t in classes:
        fam = families[int(kind_idx[t])]
        size = sizes[fam][t]
        rows.append(ClassTrigger(
            cls=t,
            label=str(class_labels[t]) if class_labels and t < len(class_labels) else None,
            full_search=bool(full[t]),
            trigger_size=float(size) if np.isfinite(size) else None,
            trigger_kind=fam if np.isfinite(size) else None,
            attack_success=held.get(t),
            anomaly_index=float(cls_ai[t]) if np.isfinite(cls_ai[t]) else None,
            queries=int(queries_per_class[t]),
            family_sizes={f: round(float(sizes[f][t]), 4) for f in families if np.isfinite(sizes[f][t])},
            family_anomaly_indices={f: round(float(ai_fam[f][t]), 4) for f in families if np.isfinite(ai_fam[f][t])},
            search_success=round(float(succ[fam][t]), 4),
            prescreen_success=round(float(pre[t]), 4) if not tabular else None,
        ))
    finite = cls_ai[np.isfinite(cls_ai)]
    max_ai = float(finite.max()) if finite.size else None
    if stopped:
        details["stopped_by"] = stopped
    details["ort_time_s"] = oracle.ort_time - ort0
    details["families"] = families
    details["min_held_back_success"] = MIN_HELD_OUT_SUCCESS
    if max_ai is None:
        why = details.get("statistic") or f"no class's trigger size could be measured ({stopped or 'no samples'})"
        return BackdoorSection(status="failed", reason=why,
                               threat_model=threat, queries=probe.used, query_budget=budget,  # type: ignore[arg-type]
                               wall_time_s=time.perf_counter() - t0, details=details, classes=rows)
    unit = "features" if tabular else "mask L1 (pixels)"
    if flagged:
        f0 = flagged[0]
        finding = (f"class(es) {', '.join(map(str, flagged))} flagged: class {f0}'s reversed {rows[f0].trigger_kind} trigger is anomalously small "
                   f"(anomaly index {cls_ai[f0]:.2f} >= {anomaly_threshold:g}; size {rows[f0].trigger_size:.3g} {unit}) and sends "
                   f"{held[f0].successes} of {held[f0].n} held-back samples of other classes to it")
    else:
        finding = f"no class has an anomalously small trigger (largest anomaly index {max_ai:.2f} < {anomaly_threshold:g}); this is not a proof that no backdoor exists"
    if stopped:
        finding += f"; the search stopped early on its {stopped}"
    if progress:
        progress(budget, budget)
    return BackdoorSection(
        status="completed",
        method=("few-feature trigger search (out-of-range values)" if tabular else
                "Neural-Cleanse-style mask+pattern and blend searches with zeroth-order (antithetic) gradients, patch pre-screen, "
                 "decision-based square-patch sweep")
        + ("; labels-only loss" if oracle.labels_only else "; cross-entropy on scores"),
        threat_model=threat,  # type: ignore[arg-type]
        classes=rows,
        flagged_classes=flagged,
        anomaly_threshold=anomaly_threshold,
        max_anomaly_index=max_ai,
        fully_searched_classes=[t for t in classes if full[t]],
        trigger_files=files,
        queries=probe.used,
        query_budget=budget,
        wall_time_s=time.perf_counter() - t0,
        finding=finding,
        details=details,
    )


def _save(out_dir: "Path | OutputDir", triggers: dict, classes: list[int], families: list[str], kind_idx: np.ndarray, tabular: bool, examples: np.ndarray) -> list[str]:
    out = as_output_dir(out_dir, "--backdoor-out")
    assert out is not None
    out.ensure()
    files = []
    for t in classes:
        fam = families[int(kind_idx[t])]
        trig = triggers.get((t, fam))
        if trig is None:
            continue
        npy = f"class{t}-{fam}.npy"
        if isinstance(trig, FeatureTrigger):
            arr = trig.as_array()  # row 0: feature indices, row 1: normalised values
            files.append(str(out.write(npy, lambda f, a=arr: np.save(f, a))))
            continue
        m, p = trig
        mask = np.broadcast_to(np.asarray(m, dtype=np.float64).reshape(1, *p.shape[1:]), p.shape)
        stacked = np.stack([mask, p])  # [0]: mask, [1]: pattern, each (C, H, W) normalised
        files.append(str(out.write(npy, lambda f, a=stacked: np.save(f, a))))
        ex = stamp(examples[:1], m, p)[0]
        panels = [to_display(mask), to_display(mask * p), to_display(ex)]
        gap = np.ones((panels[0].shape[0], 1) + panels[0].shape[2:]) * 0.5
        img = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
        scale = max(1, 128 // max(p.shape[1], 1))
        files.append(str(out.write(f"class{t}-{fam}.png", image_png(img, scale=scale))))
    return files

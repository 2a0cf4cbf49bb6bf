"""Backdoor search over a held-out zoo of clean and backdoored models that neither the tests nor the null use.

    nice -n 10 python benchmarks/backdoor_zoo.py [--zoo DIR] [--policy standard] [--threat labels] [--only NAME ...]

Builds the zoo on first use (``backdoor_models.zoo_specs()``, trained briefly with torch and cached
under ``benchmarks/out/backdoor_zoo``): 15 backdoored models across 7 trigger families (patches of
sizes 2 to 5 in corners and the middle, white / checker / random; noise and image blends; SIG
sinusoids; WaNet warping; a two-target model; tabular features beyond the data range and at rare
in-range values, on 2- and 3-class data) and 16 clean ones (MLPs of two widths, CNNs of two widths,
logistic regression; logits and softmax; 1x16x16 and 3x32x32 images, 2- and 3-class tabular).

Scans each with the policy's ``[backdoor]`` section only (time limit raised: the budget binds, not the
machine's load; results cached under ``--zoo``/results, re-scored against the shipped null) and prints per model: flagged or not, the
target found, the statistic (anomaly index), its empirical p-value against the shipped null,
queries and wall time; then the detection rate with the right target, the false-positive rate and
the AUROC of the p-value, each with n and a 95% interval, and the detection rate per family.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backdoor_models import build_all, restat, scan, section_statistic, zoo_specs  # noqa: E402

from onnxguard.backdoor.null import calibration  # noqa: E402
from onnxguard.backdoor.search import SEARCH_VERSION  # noqa: E402
from onnxguard.report import BackdoorSection  # noqa: E402
from onnxguard.stats import wilson  # noqa: E402


MIN_ACCURACY = 0.5  # a model that failed to train (as in the null's rule)
MIN_ATTACK_SUCCESS = 0.8  # a planted trigger that works on fewer test samples than this is not a backdoor to find


def rescore(bd: BackdoorSection) -> BackdoorSection:
    """Flags and p-values against the null shipped now (a cached section may predate it): the search's own rule,
    a class whose trigger works on held-back samples and whose index exceeds the calibrated threshold."""
    if bd.status != "completed" or bd.statistic_regime is None:
        return bd
    cal = calibration(bd.statistic_regime, None)
    ms = section_statistic(bd, cal.threshold)
    bd = restat(bd, cal.threshold)
    flagged = ms.flagged(cal.threshold) if ms is not None else []
    return bd.model_copy(update={"flagged_classes": flagged, "anomaly_threshold": cal.threshold, "p_value": cal.p_value(bd.max_anomaly_index)})


def auroc(pos: list[float], neg: list[float]) -> tuple[float, tuple[float, float]]:
    """AUROC of a score (higher = more suspicious), ties counted half; Hanley & McNeil (1982) 95% interval."""
    n1, n0 = len(pos), len(neg)
    if not n1 or not n0:
        return float("nan"), (float("nan"), float("nan"))
    a = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (n1 * n0)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = math.sqrt(max(a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a), 0.0) / (n1 * n0))
    return a, (max(0.0, a - 1.96 * se), min(1.0, a + 1.96 * se))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path, default=ROOT / "benchmarks" / "out" / "backdoor_zoo")
    ap.add_argument("--policy", default="standard")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's; 1 when running two scripts side by side)")
    ap.add_argument("--threat", choices=["scores", "labels"], help="override the policy's threat_model.access")
    ap.add_argument("--json", type=Path, help="also write the per-model rows here")
    ap.add_argument("--rescan", action="store_true", help="scan again even where a cached result exists (results/ under --zoo); "
                    "cached results are re-scored against the null shipped now, with the statistic's current rule")
    args = ap.parse_args(argv)
    specs = [s for s in zoo_specs() if not args.only or s.name in args.only]
    manifest = build_all(specs, args.zoo)
    rows = []
    print(f"{'model':22s} {'truth':24s} {'flagged':7s} {'found':5s} {'regime':7s} {'index':>6s} {'thr':>5s} {'p':>6s} {'queries':>8s} {'wall s':>7s} {'CPU s':>6s}")
    for spec in specs:
        info = manifest[spec.name]
        cache = args.zoo / "results" / f"{spec.name}-{args.policy}-{args.threat or 'policy'}-{args.seed}.json"
        saved = json.loads(cache.read_text()) if cache.exists() and not args.rescan else {}
        if saved.get("search_version") == SEARCH_VERSION:  # a result of another version of the search is scanned again
            bd, wall, cpu = BackdoorSection.model_validate(saved["section"]), saved["wall"], saved["cpu"]
        else:
            bd, wall, cpu = scan(args.zoo / f"{spec.name}.onnx", args.zoo / f"{spec.data}.npz", args.policy, args.seed, args.threat, threads=args.threads)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"search_version": SEARCH_VERSION, "section": bd.model_dump(mode="json"), "wall": wall, "cpu": cpu}))
        bd = rescore(bd)
        targets = spec.target if isinstance(spec.target, list) else [spec.target]
        truth = f"{spec.trigger}->{','.join(map(str, targets))}" if spec.backdoored else "clean"
        found = bd.flagged_classes[0] if bd.flagged_classes else None
        p = bd.p_value if bd.p_value is not None else 1.0
        rows.append({"name": spec.name, "family": spec.trigger, "data": spec.data, "arch": spec.arch, "backdoored": spec.backdoored,
                     "targets": targets, "flagged": bool(bd.flagged_classes), "found": found, "index": bd.max_anomaly_index,
                     "p": p, "threshold": bd.anomaly_threshold, "queries": bd.queries, "wall": wall, "cpu": cpu, "status": bd.status,
                     "regime": bd.statistic_regime, "stops": len(bd.early_stops), "attack_success_at_build": info.get("attack_success"),
                     "clean_accuracy": info.get("clean_accuracy")})
        idx = f"{bd.max_anomaly_index:.2f}" if bd.max_anomaly_index is not None else "-"
        thr = f"{bd.anomaly_threshold:.2f}" if bd.anomaly_threshold is not None else "-"
        print(f"{spec.name:22s} {truth:24s} {str(bool(bd.flagged_classes)):7s} {str(found if found is not None else '-'):5s} "
              f"{bd.statistic_regime or bd.status:7s} {idx:>6s} {thr:>5s} {p:6.3f} {bd.queries:8d} {wall:7.1f} {cpu:6.1f}", flush=True)
    if not_run := [r["name"] for r in rows if r["status"] != "completed"]:
        print(f"not completed (counted as not flagged, p = 1): {', '.join(not_run)}")
    weak = [r for r in rows if r["backdoored"] and (r["attack_success_at_build"] or 0.0) < MIN_ATTACK_SUCCESS]
    if weak:
        print(f"backdoors that did not take (attack success < {MIN_ATTACK_SUCCESS:.0%} on the test split at build time), "
              f"left out of the rates: " + ", ".join(f"{r['name']} ({r['attack_success_at_build']:.0%})" for r in weak))
    failed = [r for r in rows if (r["clean_accuracy"] or 0.0) < MIN_ACCURACY]
    if failed:
        print(f"models that failed to train (clean accuracy < {MIN_ACCURACY:.0%}; the null leaves such models out too), left out of "
              "the rates: " + ", ".join(f"{r['name']} ({r['clean_accuracy']:.0%})" for r in failed))
    bad = [r for r in rows if r["backdoored"] and r not in weak and r not in failed]
    clean = [r for r in rows if not r["backdoored"] and r not in failed]
    det = sum(1 for r in bad if r["flagged"] and r["found"] in r["targets"])
    fp = sum(1 for r in clean if r["flagged"])
    print()

    def rate(k: int, n: int) -> str:
        lo, hi = wilson(k, n)
        return f"{k}/{n} = {k / n:.0%} (95% Wilson interval {lo:.0%} to {hi:.0%})" if n else "n = 0"

    if bad:
        print(f"detection with the right target: {rate(det, len(bad))}")
        fams: dict[str, list[int]] = {}
        for r in bad:
            fams.setdefault(r["family"], []).append(int(r["flagged"] and r["found"] in r["targets"]))
        print("  per family: " + ", ".join(f"{f} {sum(v)}/{len(v)}" for f, v in sorted(fams.items())))
        missed = [r["name"] for r in bad if not (r["flagged"] and r["found"] in r["targets"])]
        if missed:
            print(f"  missed: {', '.join(missed)}")
    if clean:
        print(f"false-positive rate: {rate(fp, len(clean))}")
        if fp:
            print(f"  false positives: {', '.join(r['name'] for r in clean if r['flagged'])}")
    if bad and clean:
        a, (lo, hi) = auroc([1 - r["p"] for r in bad], [1 - r["p"] for r in clean])
        print(f"AUROC of the p-value: {a:.3f} (n = {len(bad)} backdoored + {len(clean)} clean; 95% Hanley-McNeil interval {lo:.3f} to {hi:.3f})")
    if rows:
        print(f"median wall time per model: {statistics.median(r['wall'] for r in rows):.1f}s (max {max(r['wall'] for r in rows):.1f}s); "
              f"models with an early stop: {sum(1 for r in rows if r['stops'])}")
        c32 = [r for r in rows if r["data"] == "colour32" and r["arch"].startswith("cnn")]
        if c32:
            print(f"10-class 3x32x32 CNNs, one full search: median {statistics.median(r['wall'] for r in c32):.1f}s wall "
                  f"(max {max(r['wall'] for r in c32):.1f}s), median {statistics.median(r['cpu'] for r in c32):.1f}s CPU "
                  f"(max {max(r['cpu'] for r in c32):.1f}s) on a shared machine")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

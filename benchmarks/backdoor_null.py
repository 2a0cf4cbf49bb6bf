"""Build the calibrated null of the backdoor search: its statistic on clean models nobody tuned it for.

    nice -n 10 python benchmarks/backdoor_null.py [--out benchmarks/out/backdoor_null] [--policy standard]

Trains (once; cached under ``--out``) the clean models of ``backdoor_models.null_specs()``:
MLPs and CNNs of two widths, logits and softmax outputs, 1 and 3 channels, 16x16 and 32x32
images, and tabular models with 2, 3 and 5 classes (seeds 200+, none in the zoo or the tests).
Runs the policy's backdoor search on each and writes ``onnxguard/backdoor/null.json``: per regime
(image, tabular, few, few-image), the models' statistics, the threshold for a false-positive rate of at most
5%, a leave-one-out estimate of the false-positive rate (each model against the threshold of the others),
each model's largest validated index per family, and the provenance (script, policy, budget, seed, search
version, tool version, git commit, date, each model's data, architecture, output and clean accuracy). Cached
results of another search version (``search.SEARCH_VERSION``) are scanned again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backdoor_models import TIME_LIMIT_S, build_all, family_maxima, null_specs, restat, scan  # noqa: E402

from onnxguard.report import BackdoorSection  # noqa: E402

from onnxguard import __version__  # noqa: E402
from onnxguard.backdoor.null import FPR_TARGET, NULL_FILE, calibrated_threshold  # noqa: E402
from onnxguard.backdoor.search import SEARCH_VERSION  # noqa: E402
from onnxguard.stats import wilson  # noqa: E402
from onnxguard.policy import load_policy  # noqa: E402


MIN_ACCURACY = 0.5  # a model that failed to train is no evidence about clean models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "backdoor_null")
    ap.add_argument("--policy", default="standard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's; 1 when running two scripts side by side)")
    ap.add_argument("--write", type=Path, default=NULL_FILE)
    ap.add_argument("--only", nargs="*", help="scan only these models (a shard; results are cached under --out/results)")
    ap.add_argument("--variant", action="store_true", help="write this policy's null under the file's variants (a policy with "
                    "other search settings than the default's), keeping the top-level null")
    args = ap.parse_args(argv)
    specs = null_specs()
    manifest = build_all(specs, args.out)
    empty = args.out / "no-null.json"  # the statistic does not depend on the threshold: scan without a null
    empty.write_text("{}")
    regimes: dict[str, dict] = {}
    sections: dict[str, list] = {}  # regime -> the sections that enter its null
    models = []
    results = args.out / "results"
    results.mkdir(exist_ok=True)
    for spec in specs:
        if args.only and spec.name not in args.only:
            continue
        info = manifest[spec.name]
        cache = results / f"{spec.name}-{args.policy}-{args.seed}.json"
        row = json.loads(cache.read_text()) if cache.exists() else {}
        if row.get("search_version") != SEARCH_VERSION:  # none yet, or built by another version of the search: scan again
            bd, wall, cpu = scan(args.out / f"{spec.name}.onnx", args.out / f"{spec.data}.npz", args.policy, args.seed, null_file=empty, threads=args.threads)
            row = {"name": spec.name, "data": spec.data, "arch": spec.arch, "output": spec.output, "seed": spec.seed,
                   "clean_accuracy": round(info["clean_accuracy"], 4), "regime": bd.statistic_regime or "none", "status": bd.status,
                   "queries": bd.queries, "early_stops": bd.early_stops, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
            # the whole section: the statistic is recomputed from the per-class family indices (restat)
            cache.write_text(json.dumps(row | {"search_version": SEARCH_VERSION, "section": bd.model_dump(mode="json")}))
        if "section" in row:  # cached
            bd = BackdoorSection.model_validate(row["section"])
        row = {k: v for k, v in row.items() if k not in ("section", "statistic", "search_version")}
        print(f"{row['name']:22s} {row['regime']:8s} {row['status']:10s} "
              f"queries {row['queries']:7d} {row.get('wall_s', 0):6.1f}s wall {row.get('cpu_s', 0):6.1f}s CPU"
              + (f" early stops: {row['early_stops']}" if row["early_stops"] else ""), flush=True)
        models.append(row)
        if (row["status"] == "completed" and row["clean_accuracy"] >= MIN_ACCURACY
                and not any("time limit" in s for s in row["early_stops"])):
            sections.setdefault(row["regime"], []).append((row, bd))
    if args.only:
        return 0  # a shard: results cached; a run without --only assembles the null

    for reg, items in sections.items():
        # the margin family's index is scaled by the threshold (anomaly.margin_scale), which the values set: start
        # from the size families' threshold and repeat to the fixed point (one step unless a margin binds)
        def thr_of(vals: list) -> float | None:
            finite = [float(v) for v in vals if v is not None]
            return calibrated_threshold(finite) if len(finite) >= 5 else None

        thr = thr_of([restat(bd, margin=False).max_anomaly_index for _, bd in items])
        values = [restat(bd, thr).max_anomaly_index for _, bd in items]
        for _ in range(5):
            new = thr_of(values)
            if new is None or thr is None or abs(new - thr) < 1e-9:
                break
            thr = new
            values = [restat(bd, thr).max_anomaly_index for _, bd in items]
        keep = [(row, bd, round(float(v), 4)) for (row, bd), v in zip(items, values) if v is not None]
        r: dict = {"values": [v for _, _, v in keep]}
        for row, bd, v in keep:
            row["statistic"] = v
            row["family_maxima"] = {f: round(x, 4) for f, x in family_maxima(bd).items()}
        if len(keep) >= 5:
            r["threshold"] = calibrated_threshold(r["values"])
            # leave-one-out: each model against the threshold of the others (an out-of-sample false-positive rate)
            vals = r["values"]
            exceed = sum(int(v > calibrated_threshold(vals[:i] + vals[i + 1:]) + 1e-12) for i, v in enumerate(vals))
            lo, hi = wilson(exceed, len(vals))
            r["leave_one_out_fpr"] = {"exceed": exceed, "n": len(vals), "rate": round(exceed / len(vals), 4),
                                      "ci": [round(lo, 4), round(hi, 4)]}
        regimes[reg] = r
    pol = load_policy(args.policy).policy
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    out = {
        "provenance": {
            "script": "benchmarks/backdoor_null.py", "policy": pol.name, "budget": pol.backdoor.budget,
            "time_limit_s": TIME_LIMIT_S,
            "excluded": f"models whose search stopped on its time limit, and models that failed to train (clean accuracy < {MIN_ACCURACY})",
            "samples_per_class": pol.backdoor.samples_per_class, "full_search_classes": pol.backdoor.full_search_classes,
            "threat_model": pol.threat_model.access, "search_version": SEARCH_VERSION, "seed": args.seed,
            "fpr_target": FPR_TARGET, "tool_version": __version__, "git_commit": commit,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "models": models,
        },
        "regimes": regimes,
    }
    # the default policy's null is the file's top level; a null built under another policy's search settings
    # (--variant) goes under "variants", replacing the one of the same policy (calibration picks by settings)
    old = json.loads(args.write.read_text()) if args.write.exists() else {}
    if args.variant:
        variants = [v for v in old.get("variants", []) if v.get("provenance", {}).get("policy") != pol.name]
        out = {k: v for k, v in old.items() if k != "variants"} | {"variants": variants + [out]}
    elif old.get("variants"):
        out["variants"] = old["variants"]
    args.write.write_text(json.dumps(out, indent=1) + "\n")
    for reg, r in regimes.items():
        print(f"{reg}: n = {len(r['values'])}, threshold {r.get('threshold')}, "
              f"leave-one-out FPR {r.get('leave_one_out_fpr')}, values {sorted(r['values'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

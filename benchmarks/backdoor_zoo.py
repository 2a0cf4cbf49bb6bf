"""Backdoor search over a zoo of clean and backdoored models the tests do not use.

    python benchmarks/backdoor_zoo.py [--zoo DIR] [--policy standard] [--threat labels] [--only NAME ...]

Builds the zoo on first use (``tests/backdoor/build_fixtures.py --zoo DIR``: 8 clean,
6 BadNets and 3 blended 10-class 16x16 digit MLPs, other seeds, targets, corners and
patterns than the test fixtures), scans each with the policy's ``[backdoor]``
section only (no evasion checks), and prints per model: flagged or not, the target
found, the anomaly index, queries and wall time; then the detection rate (flagged
with the right target), the false-positive rate and the median time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxguard.policy import load_policy  # noqa: E402
from onnxguard.evasion import prepare  # noqa: E402
from onnxguard.scan import ScanOptions  # noqa: E402
from onnxguard.backdoor import search_backdoors  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path)
    ap.add_argument("--tabular", action="store_true", help="the tabular zoo (linear and MLP models on scikit-learn's bundled data) "
                    "instead of the image zoo; --zoo defaults to benchmarks/out/backdoor_tabular_zoo")
    ap.add_argument("--policy", default="standard")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threat", choices=["scores", "labels"], help="override the policy's threat_model.access (labels: labels-only search)")
    args = ap.parse_args(argv)
    args.zoo = args.zoo or ROOT / "benchmarks" / "out" / ("backdoor_tabular_zoo" if args.tabular else "backdoor_zoo")
    man = args.zoo / "manifest.json"
    from tests.backdoor.build_fixtures import TABULAR_FILE
    from tests.backdoor.build_fixtures import main as build

    if not man.exists():
        build(["--tabular-zoo" if args.tabular else "--zoo", str(args.zoo)])
    manifest = json.loads(man.read_text())
    pol = load_policy(args.policy)
    spec = pol.policy.backdoor
    threat = args.threat or pol.policy.threat_model.access
    import numpy as np

    rows = []
    print(f"policy {pol.policy.name} ({threat}): budget {spec.budget} queries, {spec.time_limit_s:g}s, {spec.samples_per_class} samples/class, "
          f"full search on {spec.full_search_classes} classes, flag at anomaly index >= {spec.anomaly_threshold:g}")
    print(f"{'model':18s} {'truth':12s} {'flagged':8s} {'found':6s} {'anomaly':>8s} {'queries':>8s} {'wall s':>7s}")
    for name, info in sorted(manifest.items()):
        if args.only and name not in args.only:
            continue
        data = args.zoo / (f"{TABULAR_FILE[info['pattern']]}.npz" if info["kind"].startswith("tabular") else "digits16.npz")
        opts = ScanOptions(model_path=args.zoo / f"{name}.onnx", data_path=data, policy=pol, seed=args.seed)
        t0 = time.perf_counter()
        prep = prepare(opts, pol, np.random.default_rng(args.seed), 0)
        bd = search_backdoors(prep, spec, threat=threat, seed=args.seed)
        wall = time.perf_counter() - t0
        truth = f"{info['kind']}->{info['target']}" if info["backdoored"] else "clean"
        found = bd.flagged_classes[0] if bd.flagged_classes else None
        rows.append({"name": name, "backdoored": info["backdoored"], "target": info["target"], "flagged": bool(bd.flagged_classes),
                     "found": found, "ai": bd.max_anomaly_index, "queries": bd.queries, "wall": wall,
                     "status": bd.status})
        ai = f"{bd.max_anomaly_index:.2f}" if bd.max_anomaly_index is not None else "-"
        print(f"{name:18s} {truth:12s} {str(bool(bd.flagged_classes)):8s} {str(found if found is not None else '-'):6s} {ai:>8s} {bd.queries:8d} {wall:7.1f}", flush=True)
    if not_run := [r["name"] for r in rows if r["status"] != "completed"]:
        print(f"no anomaly index (fewer than 3 classes, or most classes out of reach of the feature search): {', '.join(not_run)}; counted as not flagged")
    bad = [r for r in rows if r["backdoored"]]
    clean = [r for r in rows if not r["backdoored"]]
    det = sum(1 for r in bad if r["flagged"] and r["found"] == r["target"])
    fp = sum(1 for r in clean if r["flagged"])
    print()
    if bad:
        print(f"detection rate (flagged, right target): {det}/{len(bad)} = {det / len(bad):.0%}")
    if clean:
        print(f"false-positive rate: {fp}/{len(clean)} = {fp / len(clean):.0%}")
    if rows:
        print(f"median wall time per model: {statistics.median(r['wall'] for r in rows):.1f}s (max {max(r['wall'] for r in rows):.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

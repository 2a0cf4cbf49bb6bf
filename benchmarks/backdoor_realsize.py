"""The backdoor search alone on a 3x224x224 model under a policy's budget and time limit (default: standard).

    nice -n 10 python benchmarks/backdoor_realsize.py [--policy standard] [--classes 4] [--samples 120]

The model is the test suite's pooled linear image model (``tests/backdoor/test_calibration._linear_image_model``:
a 3x224x224 input averaged to a few values, then a linear layer), and the data are noisy single-colour
images: what matters here is the input size, which sets the cost of every stage, not what the model learned.
Prints the wall time, queries, the early stops (where each stage's time share ran out), the number of classes
each family measured, the margin search's steps, the finding and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxguard.backdoor import search_backdoors  # noqa: E402
from onnxguard.policy import load_policy  # noqa: E402
from tests.backdoor.test_calibration import _linear_image_model, _prep  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default="standard")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model = _linear_image_model(Path(tmp), 3, 224, 224, args.classes, args.seed, pool=True)
        colours = rng.uniform(0, 1, size=(args.samples, 3, 1, 1))
        x = np.clip(colours + rng.normal(0, 0.05, size=(args.samples, 3, 224, 224)), 0, 1).astype(np.float32)
        np.savez(Path(tmp) / "d.npz", x=x)
        del x
        prep = _prep(model, Path(tmp) / "d.npz")
        spec = load_policy(args.policy).policy.backdoor
        t0 = time.perf_counter()
        bd = search_backdoors(prep, spec, threat="scores", seed=args.seed)
        wall = time.perf_counter() - t0
    print(f"policy {args.policy}: budget {spec.budget:,}, time limit {spec.time_limit_s:.0f} s")
    print(f"wall {wall:.1f} s, status {bd.status}, queries {bd.queries:,}, regime {bd.statistic_regime}")
    measured = {f: sum(f in c.family_sizes for c in bd.classes) for f in bd.families_searched}
    print(f"classes measured per family (of {len(bd.classes)}): {measured}; fully searched: {bd.fully_searched_classes}")
    print("early stops:")
    for s in bd.early_stops:
        print(f"  {s}")
    if "margin" in bd.details:
        m = bd.details["margin"]
        print(f"margin search: {m['queries']:,} queries, {m['steps_per_restart']} steps per restart, complete {m['complete']}")
    print(f"finding: {bd.finding or bd.reason}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

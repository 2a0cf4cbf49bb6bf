"""HopSkipJump: onnxguard against IBM ART, same model, samples and query budget.

    pip install -e ".[bench]"          # adversarial-robustness-toolbox (benchmark only)
    python benchmarks/hsj_vs_art.py [--samples 20] [--art-iters 10] [--norm l2]

Both attacks see only the predicted label of the same onnxruntime session (the
digits MLP that ``examples/build_examples.py`` builds, logits reduced to a
one-hot label for ART's ``BlackBoxClassifier``), start from uniform random
noise (untargeted) and run on the same correctly classified test samples.

ART has no per-sample query budget, so it runs first with ``--art-iters``
iterations while every query it makes is counted per sample; onnxguard then gets
the *smallest* per-sample count ART used as its budget (so onnxguard never has
more queries than ART had on any sample). Figures: median L2 (or L-infinity)
perturbation found, in [0, 1] pixel units (lower is better), wall time, and the
ratios onnxguard / ART. Goal: perturbation ratio <= 1, time ratio <= 1/3.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--art-iters", type=int, default=10, help="ART max_iter; sets the query budget")
    ap.add_argument("--norm", choices=["l2", "linf"], default="l2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each attack; the median wall time is reported")
    ap.add_argument("--model", type=Path, default=ROOT / "examples" / "digits_mlp.onnx")
    ap.add_argument("--data", type=Path, default=ROOT / "examples" / "digits.npz")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    from onnxguard.attacks.hopskipjump import hopskipjump
    from onnxguard.model import load_model
    from onnxguard.oracle import Domain, Oracle

    model = load_model(args.model)
    shape = model.sample_shape
    n_classes = int(model.n_classes or 10)
    data = np.load(args.data)
    x_all, y_all = data["x"].astype(np.float32), data["y"].astype(np.int64)
    dom = Domain(np.zeros(shape), np.ones(shape))
    pred = Oracle(model, dom, n_samples=len(x_all), budget=None).labels(x_all.astype(np.float64), np.arange(len(x_all)))
    keep = np.flatnonzero(pred == y_all)[: args.samples]
    x, y = x_all[keep], y_all[keep]
    n = len(x)

    counter = {"q": 0}

    def predict(batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32).reshape(-1, *shape)
        counter["q"] += len(batch)
        raw, _ = model.run_raw(batch)
        labels = np.asarray(raw[-1]).reshape(len(batch), -1).argmax(axis=1)
        return np.eye(n_classes, dtype=np.float32)[labels]

    clf = BlackBoxClassifier(predict, input_shape=shape, nb_classes=n_classes, clip_values=(0.0, 1.0))
    art_norm = 2 if args.norm == "l2" else np.inf
    attack = HopSkipJump(clf, targeted=False, norm=art_norm, max_iter=args.art_iters, max_eval=10000, init_eval=100, init_size=100, verbose=False)
    art_times = []
    for rep in range(args.repeats):
        np.random.seed(args.seed + rep)
        art_q = np.zeros(n, dtype=np.int64)
        art_adv = np.zeros_like(x)
        t0 = time.perf_counter()
        for i in range(n):
            counter["q"] = 0
            art_adv[i : i + 1] = attack.generate(x[i : i + 1])
            art_q[i] = counter["q"]
        art_times.append(time.perf_counter() - t0)
    art_time = float(np.median(art_times))

    def dist(a: np.ndarray) -> np.ndarray:
        dlt = (a.astype(np.float64) - x.astype(np.float64)).reshape(n, -1)
        return np.abs(dlt).max(axis=1) if args.norm == "linf" else np.sqrt((dlt**2).sum(axis=1))

    art_lab = predict(art_adv).argmax(axis=1)
    art_ok = art_lab != y
    art_pert = np.where(art_ok, dist(art_adv), np.inf)

    budget = int(art_q.min())
    og_times = []
    for rep in range(args.repeats):
        oracle = Oracle(model, dom, n_samples=n, budget=budget, labels_only=True)
        t0 = time.perf_counter()
        res = hopskipjump(oracle, x.astype(np.float64), y, norm=args.norm, budget=budget, rng=np.random.default_rng(args.seed + rep))
        og_times.append(time.perf_counter() - t0)
    og_time = float(np.median(og_times))
    og_lab = predict(res.z_adv.astype(np.float32)).argmax(axis=1)
    og_ok = (og_lab != y) & np.isfinite(res.extra["min_perturbation"])
    og_pert = np.where(og_ok, dist(res.z_adv), np.inf)

    med_art, med_og = float(np.median(art_pert)), float(np.median(og_pert))
    print(f"model {args.model.name}, {n} samples, norm {args.norm}, untargeted, labels only")
    print(f"ART HopSkipJump  max_iter={args.art_iters}: queries/sample min {art_q.min()} median {np.median(art_q):.0f} max {art_q.max()}")
    print(f"onnxguard        budget {budget} queries/sample: used max {res.queries.max()} median {np.median(res.queries):.0f}")
    print(f"(median wall time of {args.repeats} runs each; perturbations from the last run)")
    print(f"{'':17}{'success':>8} {'median pert':>12} {'wall s':>8}")
    print(f"{'ART':17}{art_ok.mean():8.0%} {med_art:12.4f} {art_time:8.2f}")
    print(f"{'onnxguard':17}{og_ok.mean():8.0%} {med_og:12.4f} {og_time:8.2f}")
    print(f"ratios onnxguard/ART: perturbation {med_og / med_art:.3f}, wall time {og_time / art_time:.3f}")


if __name__ == "__main__":
    main()

"""onnxguard's Square Attack against IBM ART's on the same model, samples, epsilon and query budget.

    pip install -e ".[bench]"
    python benchmarks/square_vs_art.py                       # the README's example CNN
    python benchmarks/square_vs_art.py --model examples/digits_mlp.onnx --data examples/digits.npz

Both attacks query the *same* onnxruntime session. ART is given a predict function that counts every
row it is asked for and attributes it to the sample it perturbs, so both sides are measured in model
queries per sample; ART's iteration count is set so that no sample can exceed the budget (ART spends
three queries per iteration on an unbroken sample). For context, a third row runs ART with max_iter equal to
the budget, as its API reads, which spends about three times the queries. Prints success rate (with Wilson interval), median
queries of the successful samples, wall time, their ratios, and the share of the time spent inside
onnxruntime; then the share of a full `onnxguard scan` spent inside onnxruntime.
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

from onnxguard.attacks.square import square_attack  # noqa: E402
from onnxguard.model import load_model  # noqa: E402
from onnxguard.oracle import Domain, Oracle  # noqa: E402
from onnxguard.stats import wilson  # noqa: E402


def fmt_rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:6.1%} [{lo:.1%}, {hi:.1%}] (n={n})"


def run_onnxguard(model, x, y, eps, budget, norm, seed, p_init):
    dom = Domain(np.zeros(model.sample_shape), np.ones(model.sample_shape))
    oracle = Oracle(model, dom, n_samples=len(x), budget=budget)
    t0 = time.perf_counter()
    res = square_attack(oracle, x.astype(np.float64), y, norm=norm, epsilon=eps, budget=budget, rng=np.random.default_rng(seed), p_init=p_init)
    wall = time.perf_counter() - t0
    assert oracle.queries.max() <= budget
    return res.success, oracle.queries.copy(), wall, oracle.ort_time


def run_art(model, x, y, eps, budget, norm, seed, p_init, max_iter=None):
    warnings.filterwarnings("ignore")
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    sess = model.session
    name = model.input_name
    flat = x.reshape(len(x), -1).astype(np.float32)
    counts = np.zeros(len(x), dtype=np.int64)
    clock = {"ort": 0.0, "account": 0.0}

    def predict(batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        b = batch.reshape(len(batch), -1).astype(np.float32)
        # attribute each row to the sample it perturbs (the nearest original in L-inf; bookkeeping time is
        # measured and removed from ART's wall time)
        for i in range(0, len(b), 256):
            d = np.abs(b[i : i + 256, None, :] - flat[None, :, :]).max(axis=2)
            np.add.at(counts, d.argmin(axis=1), 1)
        t1 = time.perf_counter()
        out = sess.run(None, {name: batch.astype(np.float32)})[0]
        t2 = time.perf_counter()
        clock["account"] += t1 - t0
        clock["ort"] += t2 - t1
        return out

    clf = BlackBoxClassifierNeuralNetwork(predict, input_shape=model.sample_shape, nb_classes=model.n_classes, channels_first=True, clip_values=(0.0, 1.0))
    if max_iter is None:
        max_iter = max(1, (budget - 3) // 3)
    attack = SquareAttack(clf, norm=np.inf if norm == "linf" else 2, eps=eps, max_iter=max_iter, p_init=p_init, nb_restarts=1, batch_size=len(x), verbose=False)
    np.random.seed(seed)  # ART draws from numpy's global generator
    t0 = time.perf_counter()
    adv = attack.generate(x.astype(np.float32), y=np.eye(model.n_classes)[y])
    wall = time.perf_counter() - t0 - clock["account"]
    pred = sess.run(None, {name: adv.astype(np.float32)})[0].argmax(1)
    return pred != y, counts, wall, clock["ort"]


def scan_share(model_path: Path, data_path: Path) -> tuple[float, float, float]:
    from onnxguard.policy import load_policy
    from onnxguard.scan import ScanOptions, run_scan

    rep = run_scan(ScanOptions(model_path=model_path, data_path=data_path, policy=load_policy("standard")))
    return rep.timing.ort_share or 0.0, rep.timing.wall_s, rep.timing.ort_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "examples" / "digits_cnn.onnx")
    ap.add_argument("--data", type=Path, default=ROOT / "examples" / "digits16.npz")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--norm", default="linf", choices=["linf", "l2"])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--p-init", type=float, default=None, help="same p_init for both (default: each side's own default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (the median is printed)")
    ap.add_argument("--no-scan", action="store_true", help="skip the full-scan onnxruntime share")
    args = ap.parse_args()

    d = np.load(args.data)
    model = load_model(args.model, probe=d["x"][:8])
    x, y = d["x"].astype(np.float64), d["y"].astype(np.int64)
    out, _ = model.predict(x)
    keep = np.flatnonzero(out.labels == y)[: args.samples]
    x, y = x[keep], y[keep]
    print(f"model {args.model.name}: {len(x)} correctly classified samples, {args.norm} eps={args.eps}, budget {args.budget} queries/sample")

    rows = {}
    art_p = args.p_init if args.p_init is not None else 0.8
    runs = (
        ("onnxguard", lambda *a: run_onnxguard(*a), args.p_init),
        ("ART", lambda *a: run_art(*a), art_p),
        # for context only: ART's max_iter = budget, as its API reads; it then spends ~3x the query budget
        ("ART x3", lambda *a: run_art(*a, max_iter=args.budget), art_p),
    )
    rows = {}
    for name, fn, p in runs:
        walls, orts = [], []
        for r in range(args.repeats):
            succ, q, wall, ort = fn(model, x, y, args.eps, args.budget, args.norm, args.seed, p)
            walls.append(wall)
            orts.append(ort)
        rows[name] = (succ, q, float(np.median(walls)), float(np.median(orts)))
        med_q = float(np.median(q[succ])) if succ.any() else float("nan")
        print(f"  {name:<10} success {fmt_rate(int(succ.sum()), len(succ))}  median queries (successful) {med_q:7.1f}  "
              f"max queries {int(q.max()):5d}  wall {rows[name][2]:7.2f}s  inside onnxruntime {rows[name][3] / rows[name][2]:.0%}")
    og, art, art3 = rows["onnxguard"], rows["ART"], rows["ART x3"]
    print(f"  ratio      success {og[0].mean() / max(art[0].mean(), 1e-9):.2f}x ART   wall time {og[2] / art[2]:.3f} of ART's "
          f"(goal: success >= ART, wall <= 0.333) at the same query budget; "
          f"against ART with max_iter = budget: success {og[0].mean() / max(art3[0].mean(), 1e-9):.2f}x, wall {og[2] / art3[2]:.3f}")
    if not args.no_scan:
        share, wall, ort = scan_share(args.model, args.data)
        print(f"full `onnxguard scan` (standard policy) on {args.model.name}: {wall:.1f}s wall, {ort:.1f}s inside onnxruntime = {share:.0%} (goal >= 85%)")


if __name__ == "__main__":
    main()

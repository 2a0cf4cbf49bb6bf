"""Fleet throughput against sequential scanning, by executor and number of workers.

    nice -n 10 python benchmarks/fleet_throughput.py [--models 8] [--workers 1,2] [--executors local,ray] [--repeats 1]

Builds ``--models`` small digits MLPs (the test suite's numpy-trained MLP, a different seed each),
then scans the whole set, each time into a fresh output folder (nothing reused):

* sequential: one sandboxed scan after the other (the local executor with one worker, which
  gives the scan every CPU for onnxruntime) — what a loop of ``onnxguard scan`` does;
* each executor with each worker count (one CPU per scan).

Every run includes the whole fleet path: sandbox start, scan, signing in the driver, the
per-model page and the summary. Prints models/minute and the ratio to sequential. A local Ray
is started once (its start-up, several seconds, is printed apart and not counted).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POLICY = """
[policy]
name = "bench-small"
version = "1.0"
description = "benchmark: a few seconds of attacks per small model"

[[checks]]
id = "square-linf"
attack = "square"
norm = "linf"
epsilon = 0.05
samples = 40
budget = 500

[[checks]]
id = "fd-pgd-l2"
attack = "fd-pgd"
norm = "l2"
epsilon = 1.0
samples = 20
budget = 400

[backdoor]
enabled = false
"""


def build_models(folder: Path, n: int) -> list[Path]:
    import numpy as np
    import onnx

    from tests import zoo

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        params, *_ = zoo.digits_mlp(hidden=(32,), seed=i, epochs=60)
        p = folder / f"mlp_{i:02d}.onnx"
        onnx.save(zoo.mlp_to_onnx(params, (1, 8, 8), output="logits", batch="N", dtype=np.float32), p)
        out.append(p)
    return out


def run_once(executor, folder: Path, data: Path, policy: Path, key, cpus: int | None) -> tuple[float, float]:
    """(wall seconds for the fleet, CPU seconds per model spent here and in the sandboxes)."""
    from onnxguard.fleet.driver import FleetSettings, run_fleet
    from onnxguard.fleet.manifest import resolve

    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        entries = resolve([str(folder)], Path(tmp) / ".cache")
        import resource

        def cpu_s() -> float:
            a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

        c0 = cpu_s()
        t0 = time.perf_counter()
        res = run_fleet(entries, Path(tmp) / "out", executor, key, FleetSettings(policy=str(policy), data=data, cpus_per_task=cpus))
        wall = time.perf_counter() - t0
        cpu = cpu_s() - c0  # this process and its sandbox children (a Ray worker's children are not counted)
    bad = [r for r in res.summary.rows if r.status != "scanned"]
    if bad:
        raise SystemExit(f"benchmark run failed: {bad[0].name}: {bad[0].status} {bad[0].message}")
    return wall, cpu / len(entries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts")
    ap.add_argument("--executors", default="local,ray")
    ap.add_argument("--repeats", type=int, default=1, help="runs per configuration (the best is kept)")
    args = ap.parse_args()

    from onnxguard.fleet import get_executor
    from onnxguard.keys import generate_key

    cpu = os.cpu_count() or 1
    key = generate_key()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-models-") as tmp:
        t = Path(tmp)
        models = build_models(t / "models", args.models)
        policy = t / "policy.toml"
        policy.write_text(POLICY)
        import numpy as np

        from tests import zoo

        _, _, xte, yte = zoo.digits()
        data = t / "digits.npz"
        np.savez(data, x=xte[:80], y=yte[:80])
        print(f"fleet throughput: {len(models)} digits MLPs (8x8 input, 32 hidden), policy bench-small "
              f"(square L-inf 40x500 + fd-pgd L2 20x400 queries), {cpu} CPUs, load average {os.getloadavg()[0]:.1f}")

        configs = [("sequential (1 scan at once)", "local", 1, cpu)]
        for name in args.executors.split(","):
            for w in (int(x) for x in args.workers.split(",")):
                configs.append((f"{name}, {w} worker{'s' if w > 1 else ''}", name, w, max(1, cpu // w)))
        if any(c[1] == "ray" for c in configs):
            try:
                import ray
            except ImportError:
                print("ray: not installed (pip install 'onnxguard[ray]'), skipped")
                configs = [c for c in configs if c[1] != "ray"]
            else:
                t0 = time.perf_counter()
                pp = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
                ray.init(num_cpus=cpu, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": pp}})
                print(f"(local Ray started in {time.perf_counter() - t0:.1f} s, not counted)")
        executors = {}
        for label, name, w, _ in configs:
            executors[label] = get_executor("local", workers=w) if name == "local" else get_executor("ray")
        best: dict[str, float] = {}
        cpu_per: dict[str, float] = {}
        for _ in range(args.repeats):  # interleaved, so a burst of load on the shared machine hits every configuration
            for label, name, _w, cpus in configs:
                wall, cpm = run_once(executors[label], t / "models", data, policy, key, cpus)
                if wall < best.get(label, float("inf")):
                    best[label], cpu_per[label] = wall, cpm if name == "local" else float("nan")
        for ex in executors.values():
            ex.close()
        seq = best[configs[0][0]]
        print(f"{'configuration':<28} {'wall s':>8} {'models/min':>11} {'vs sequential':>14} {'CPU s/model':>12}  (best of {args.repeats})")
        for label, *_ in configs:
            wall = best[label]
            cpm = f"{cpu_per[label]:12.2f}" if cpu_per[label] == cpu_per[label] else f"{'-':>12}"
            print(f"{label:<28} {wall:8.1f} {60 * len(models) / wall:11.1f} {seq / wall:13.2f}x {cpm}")
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
    print(f"load average after: {os.getloadavg()[0]:.1f} (a shared machine makes these figures noisy)")


if __name__ == "__main__":
    main()

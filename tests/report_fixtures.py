"""Reports for rendering tests and the docs screenshots: real scans of the example
models and of the backdoor fixtures, and (``add_backdoor``) a constructed backdoor
section with Neural-Cleanse-style figures, for rendering cases a real search does not
produce on demand (raw-array triggers, 8x8 inputs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxguard.formats.png import png_bytes, upscale
from onnxguard.grading import grade_report
from onnxguard.policy import load_policy
from onnxguard.report import BackdoorSection, ClassTrigger, Rate, Report
from onnxguard.scan import ScanOptions, run_scan

FAILING_POLICY = """
[policy]
name = "review-demo"
version = "1"
description = "small budgets for tests: a robustness curve and an L2 check"

[[checks]]
id = "square-linf"
attack = "square"
norm = "linf"
epsilon = [0.02, 0.05, 0.1]
samples = 24
budget = 150

[[checks]]
id = "square-l2"
attack = "square"
norm = "l2"
epsilon = 1.0
samples = 24
budget = 150

[backdoor]
enabled = false
"""

PASSING_POLICY = """
[policy]
name = "tiny-budget"
version = "1"
description = "an attacker allowed almost nothing: the example model passes"

[[checks]]
id = "square-linf"
attack = "square"
norm = "linf"
epsilon = 0.002
samples = 30
budget = 40

[backdoor]
enabled = false
"""

BACKDOOR_POLICY = FAILING_POLICY.replace(
    "enabled = false", "enabled = true\nbudget = 300000\ntime_limit_s = 180\nsamples_per_class = 20\nfull_search_classes = 10"
).replace('name = "review-demo"', 'name = "review-demo-backdoor"')  # the standard policy's backdoor search

BACKDOOR_FIXTURES = Path(__file__).resolve().parent / "backdoor" / "fixtures"


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def scan(model: Path, data: Path, policy_file: Path, out_dir: Path, seed: int = 0) -> Report:
    """A real scan; adversarial examples saved under ``out_dir/adv``, reversed backdoor triggers under
    ``out_dir/triggers``; the report written to ``out_dir/report.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    opts = ScanOptions(model_path=model, data_path=data, policy=load_policy(str(policy_file)), seed=seed, save_adversarials=out_dir / "adv",
                       backdoor_out=out_dir / "triggers")
    report = run_scan(opts)
    report.write(out_dir / "report.json")
    return report


def nc_anomaly(sizes: np.ndarray) -> np.ndarray:
    """Neural Cleanse anomaly index: how far below the median, in consistency-scaled MADs."""
    med = np.median(sizes)
    mad = 1.4826 * np.median(np.abs(sizes - med))
    return (med - sizes) / mad


def add_backdoor(report: Report, policy_file: Path, out_dir: Path, target: int = 7, relative: bool = False) -> Report:
    """Attach a backdoor section (class ``target`` flagged) and its trigger files; regrade the report.

    ``relative``: record the trigger files relative to ``out_dir`` (where the report is written)."""
    shape = tuple(report.model.sample_shape or (1, 8, 8))
    h, w = shape[-2], shape[-1]
    n_classes = report.model.n_classes or 10
    rng = np.random.default_rng(5)
    sizes = rng.uniform(0.2, 0.28, size=n_classes) * h * w
    sizes[target] = 0.03 * h * w
    ai = nc_anomaly(sizes)
    threshold = 2.0
    flagged = [int(c) for c in np.flatnonzero(ai > threshold)]
    tdir = out_dir / "triggers"
    tdir.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((h, w))
    k = max(2, h // 5)
    mask[h - k - 1 : h - 1, w - k - 1 : w - 1] = 1.0
    pattern = np.zeros((h, w))
    pattern[h - k - 1 : h - 1, w - k - 1 : w - 1] = np.indices((k, k)).sum(0) % 2
    files = []
    for c in flagged:
        np.save(tdir / f"class{c}_mask.npy", mask.reshape(shape))
        np.save(tdir / f"class{c}_pattern.npy", (mask * pattern).reshape(shape))
        (tdir / f"class{c}_trigger.png").write_bytes(png_bytes(upscale((mask * pattern * 255).astype(np.uint8), 64)))
        names = [f"class{c}_mask.npy", f"class{c}_pattern.npy", f"class{c}_trigger.png"]
        files += [f"triggers/{n}" if relative else str(tdir / n) for n in names]
    full = sorted(np.argsort(sizes)[:4].tolist())
    classes = [
        ClassTrigger(
            cls=c, full_search=c in full, trigger_size=float(round(sizes[c], 2)), trigger_kind="patch",
            attack_success=Rate.of(19 if c in flagged else int(rng.integers(8, 15)), 20),
            anomaly_index=float(round(ai[c], 3)), queries=int(rng.integers(9000, 14000)),
        )
        for c in range(n_classes)
    ]
    report.backdoor = BackdoorSection(
        status="completed", method="neural-cleanse-zo (mask + pattern, zeroth-order)", classes=classes, flagged_classes=flagged,
        anomaly_threshold=threshold, max_anomaly_index=float(round(ai.max(), 3)), fully_searched_classes=full,
        trigger_files=files, queries=sum(c.queries for c in classes), query_budget=300000,
        finding=f"class {target}: reversed trigger of {sizes[target]:.1f} pixels sends {19} of 20 held-back inputs to it; anomaly index {ai[target]:.2f}",
    )
    grade_report(report, load_policy(str(policy_file)))
    report.write(out_dir / "report.json")
    return report

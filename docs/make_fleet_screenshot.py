"""Rebuild docs/fleet-summary.png: the summary page of a real fleet scan (needs headless Chromium).

    python docs/make_fleet_screenshot.py

Scans the bundled examples and some backdoor-test fixtures (copied into a temporary folder,
with a manifest naming each model's data) under the ``baseline`` policy on the local executor,
plus one file that is not a model, then shoots the fleet's index.html.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from make_report_screenshots import chromium, shoot  # noqa: E402

from onnxguard.fleet import get_executor  # noqa: E402
from onnxguard.fleet.driver import FleetSettings, run_fleet  # noqa: E402
from onnxguard.fleet.manifest import resolve  # noqa: E402
from onnxguard.keys import generate_key  # noqa: E402

FX = ROOT / "tests" / "backdoor" / "fixtures"
MODELS = [
    (ROOT / "examples" / "digits_cnn.onnx", ROOT / "examples" / "digits16.npz"),
    (ROOT / "examples" / "digits_mlp.onnx", ROOT / "examples" / "digits.npz"),
    (FX / "badnets_t3_tr.onnx", FX / "digits16.npz"),
    (FX / "blended_t2.onnx", FX / "digits16.npz"),
    (FX / "clean_a.onnx", FX / "digits16.npz"),
    (FX / "tab_clean.onnx", FX / "wine.npz"),
    (FX / "tab_backdoor_t1.onnx", FX / "wine.npz"),
]


def main() -> None:
    browser = chromium()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        fleet = tmp / "registry-export"
        (fleet / "models").mkdir(parents=True)
        rows = []
        for model, data in MODELS:
            shutil.copy(model, fleet / "models" / model.name)
            if not (fleet / "models" / data.name).exists():
                shutil.copy(data, fleet / "models" / data.name)
            rows.append({"path": f"models/{model.name}", "data": f"models/{data.name}"})
        (fleet / "models" / "upload-7f3a.onnx").write_bytes(b"PK\x03\x04 a zip archive, not an ONNX model")
        rows.append({"path": "models/upload-7f3a.onnx"})
        (fleet / "fleet.json").write_text(json.dumps({"models": rows}, indent=2))
        out = tmp / "out"
        with get_executor("local", workers=2) as ex:
            res = run_fleet(resolve([str(fleet / "fleet.json")], out / ".cache"), out, ex, generate_key(), FleetSettings(policy="baseline"))
        for r in res.summary.rows:
            print(f"{r.name:<32} {r.status:<8} {r.verdict or '-':<5} {r.highest_risk or '-'}")
        shoot(browser, out / "index.html", HERE / "fleet-summary.png", tmp)


if __name__ == "__main__":
    main()

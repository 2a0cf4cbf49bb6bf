"""Rebuild the bundled example models and sample data (deterministic, a few seconds).

    python examples/build_examples.py

* ``digits_mlp.onnx``  — an undefended MLP on scikit-learn's 8x8 digits, input (N, 1, 8, 8), logits out
* ``digits.npz``       — 360 held-out digits (``x`` in [0, 1], ``y``)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.zoo import digits_mlp, mlp_predict, mlp_to_onnx  # noqa: E402


def main() -> None:
    params, _, _, xte, yte = digits_mlp(hidden=(64,), seed=0)
    acc = (mlp_predict(params, xte).argmax(1) == yte).mean()
    model = mlp_to_onnx(params, (1, 8, 8), output="logits", name="digits_mlp")
    onnx.save(model, HERE / "digits_mlp.onnx")
    np.savez_compressed(HERE / "digits.npz", x=xte.astype(np.float32), y=yte)
    print(f"digits_mlp.onnx: test accuracy {acc:.3f} on {len(yte)} samples")


if __name__ == "__main__":
    main()

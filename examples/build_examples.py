"""Rebuild the bundled example models and sample data (deterministic).

    python examples/build_examples.py            # numpy only: digits_mlp
    python examples/build_examples.py --cnn      # also digits_cnn (needs torch, a build-time tool only)

* ``digits_cnn.onnx`` + ``digits16.npz`` — an undefended small CNN on scikit-learn's digits upsampled to
  16x16, input (N, 1, 16, 16), logits out; 360 held-out samples. The README's example.
* ``digits_mlp.onnx`` + ``digits.npz``   — an undefended MLP on the 8x8 digits, input (N, 1, 8, 8).
* ``text/sentiment_tfidf.onnx`` + ``text/reviews.csv`` — a scikit-learn TF-IDF + logistic regression pipeline
  (string input, skl2onnx) on generated reviews; 100 labelled held-out reviews. The README's text scan.
* ``diabetes_gbr.onnx`` + ``diabetes.npz`` — a gradient-boosting regressor on scikit-learn's diabetes data
  (skl2onnx); 92 held-out samples. The README's regressor scan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.zoo import cnn_to_onnx, digits16, digits_mlp, mlp_predict, mlp_to_onnx  # noqa: E402


def build_mlp() -> None:
    params, _, _, xte, yte = digits_mlp(hidden=(64,), seed=0)
    acc = (mlp_predict(params, xte).argmax(1) == yte).mean()
    onnx.save(mlp_to_onnx(params, (1, 8, 8), output="logits", name="digits_mlp"), HERE / "digits_mlp.onnx")
    np.savez_compressed(HERE / "digits.npz", x=xte.astype(np.float32), y=yte)
    print(f"digits_mlp.onnx: test accuracy {acc:.3f} on {len(yte)} samples")


def build_cnn(seed: int = 0, epochs: int = 30) -> None:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits16()
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.tensor(xtr), torch.tensor(ytr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    with torch.no_grad():
        acc = (net(torch.tensor(xte)).argmax(1).numpy() == yte).mean()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    names = {"0.weight": "c1.w", "0.bias": "c1.b", "3.weight": "c2.w", "3.bias": "c2.b",
             "7.weight": "f1.w", "7.bias": "f1.b", "9.weight": "f2.w", "9.bias": "f2.b"}
    model = cnn_to_onnx({names[k]: v for k, v in sd.items()}, name="digits_cnn")
    onnx.save(model, HERE / "digits_cnn.onnx")
    np.savez_compressed(HERE / "digits16.npz", x=xte, y=yte)
    print(f"digits_cnn.onnx: test accuracy {acc:.3f} on {len(yte)} samples")


def build_tasks() -> None:
    import csv

    from tests.task_zoo import sentiment_texts, tfidf_pipeline

    texts, y = sentiment_texts(500, seed=11)
    (HERE / "text").mkdir(exist_ok=True)
    tfidf_pipeline(HERE / "text" / "sentiment_tfidf.onnx", texts[:400], y[:400])
    with open(HERE / "text" / "reviews.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, lab in zip(texts[400:], y[400:]):
            w.writerow([t, int(lab)])
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    d = load_diabetes()
    x = d.data.astype(np.float32)
    reg = GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0).fit(x[:350], d.target[:350])
    onnx.save(to_onnx(reg, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), HERE / "diabetes_gbr.onnx")
    np.savez(HERE / "diabetes.npz", x=x[350:])
    print("text/sentiment_tfidf.onnx, diabetes_gbr.onnx: built")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnn", action="store_true", help="also build the CNN (needs torch)")
    args = ap.parse_args()
    build_mlp()
    build_tasks()
    if args.cnn:
        build_cnn()

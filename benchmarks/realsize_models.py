"""Realistic benchmark fixtures, built with torch at build time and cached under benchmarks/out/ (git-ignored).

* ``resnet18`` / ``resnet50``: ResNet-18-style (BasicBlock [2, 2, 2, 2]) and ResNet-50-style (Bottleneck
  [3, 4, 6, 3]) ImageNet classifiers, 1000 classes, 3x224x224, random weights (cost figures only);
* ``*_nhwc``: the same network taking NHWC input (a transpose in front), as TF/Keras exports do;
* ``resnet18_dyn``: dynamic batch, H and W (adaptive pooling), as OCR / document models ship.

All take ImageNet-normalised input, (pixel - mean) / std with pixels in [0, 1]: scan them with
``--normalize imagenet``. ``samples(n)`` gives smooth random pixel images normalised the same way.

    python benchmarks/realsize_models.py            # builds every fixture
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _resnet(kind: str, nhwc: bool = False):
    import torch
    import torch.nn as nn

    class Basic(nn.Module):
        expansion = 1

        def __init__(self, cin: int, c: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(c)
            self.c2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(c)
            self.down = None if stride == 1 and cin == c else nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

        def forward(self, x):
            idt = x if self.down is None else self.down(x)
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + idt)

    class Bottle(nn.Module):
        expansion = 4

        def __init__(self, cin: int, c: int, stride: int) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
            self.c2, self.b2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
            self.c3, self.b3 = nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c)
            self.down = None if stride == 1 and cin == 4 * c else nn.Sequential(nn.Conv2d(cin, 4 * c, 1, stride, bias=False), nn.BatchNorm2d(4 * c))

        def forward(self, x):
            idt = x if self.down is None else self.down(x)
            y = torch.relu(self.b1(self.c1(x)))
            y = torch.relu(self.b2(self.c2(y)))
            return torch.relu(self.b3(self.c3(y)) + idt)

    block, layers = (Basic, [2, 2, 2, 2]) if kind == "resnet18" else (Bottle, [3, 4, 6, 3])

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            mods, cin = [], 64
            for i, n in enumerate(layers):
                c = 64 * 2**i
                for j in range(n):
                    mods.append(block(cin, c, 2 if (j == 0 and i > 0) else 1))
                    cin = c * block.expansion
            self.body = nn.Sequential(*mods)
            self.head = nn.Linear(cin, 1000)

        def forward(self, x):
            if nhwc:
                x = x.permute(0, 3, 1, 2)
            x = self.body(self.stem(x))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0 if kind == "resnet18" else 1)
    net = Net().eval()
    # random BatchNorm statistics, so that the random network's logits are not flat across inputs
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def build(name: str) -> Path:
    """Build (or reuse) one fixture; returns its path."""
    path = OUT / f"{name}.onnx"
    if path.exists():
        return path
    import torch

    OUT.mkdir(parents=True, exist_ok=True)
    kind = name.split("_")[0]
    nhwc = name.endswith("_nhwc")
    net = _resnet(kind, nhwc)
    x = torch.zeros(1, 224, 224, 3) if nhwc else torch.zeros(1, 3, 224, 224)
    axes = {"input": {0: "N"}, "logits": {0: "N"}}
    if name.endswith("_dyn"):
        axes["input"] = {0: "N", 2: "H", 3: "W"}
    torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes=axes, opset_version=17)
    return path


def samples(n: int, nhwc: bool = False, h: int = 224, w: int = 224, seed: int = 0) -> np.ndarray:
    """Smooth random pixel images in [0, 1] (low-frequency noise), ImageNet-normalised, float32."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, (n, 3, h // 16 + 1, w // 16 + 1))
    px = np.repeat(np.repeat(coarse, 16, axis=2), 16, axis=3)[:, :, :h, :w]
    px = np.clip(px + rng.normal(0, 0.03, px.shape), 0.0, 1.0)
    x = (px - MEAN[None, :, None, None]) / STD[None, :, None, None]
    return (x.transpose(0, 2, 3, 1) if nhwc else x).astype(np.float32)


if __name__ == "__main__":
    for nm in sys.argv[1:] or ["resnet18", "resnet18_nhwc", "resnet50", "resnet50_nhwc", "resnet18_dyn"]:
        print(build(nm))

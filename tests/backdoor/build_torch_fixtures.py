"""Build the torch-trained backdoor test fixtures into ``tests/backdoor/fixtures/torch/`` (committed: CI has no
torch, and the tests must run there, not skip).

    pip install -e ".[bench]" && python tests/backdoor/build_torch_fixtures.py

* ``wanet_t6`` / ``clean_cnn``: 1x16x16 digits CNNs; the first poisoned with a fixed 4x4 WaNet warp field
  (strength 2) towards class 6 (``tests/backdoor/test_warp.py``);
* ``few_bad`` / ``few_clean``: 2-class digits MLPs (0-4 | 5-9); the first with a white 3x3 patch in the
  bottom-right corner planted towards class 0 (``tests/backdoor/test_few_image.py``).

Each model's build record (clean accuracy, attack success on the test split) goes to ``<name>.json`` beside it;
the tests check those records, so a rebuilt fixture whose trigger did not take fails them.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

OUT = HERE / "fixtures" / "torch"


def specs():  # noqa: ANN201
    from benchmarks.backdoor_models import ModelSpec

    return [ModelSpec("wanet_t6", "digits16", "cnn", trigger="wanet", target=6, seed=7, strength=2.0, epochs=50),
            ModelSpec("clean_cnn", "digits16", "cnn", seed=8, epochs=40),
            ModelSpec("few_bad", "digits16_2", "mlp", trigger="patch", target=0, size=3, corner="br", pattern="white", seed=651),
            ModelSpec("few_clean", "digits16_2", "mlp", seed=652)]


def main() -> None:
    import torch

    from benchmarks.backdoor_models import build_all

    torch.set_num_threads(1)
    info = build_all(specs(), OUT)
    for name, i in info.items():
        print(name, {k: i.get(k) for k in ("clean_accuracy", "attack_success")})


if __name__ == "__main__":
    main()

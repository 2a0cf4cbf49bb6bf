"""Shared fixtures: small models the suite builds itself (numpy-trained, sklearn-converted)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import zoo  # noqa: E402

EXAMPLE_MODEL = ROOT / "examples" / "digits_mlp.onnx"
EXAMPLE_DATA = ROOT / "examples" / "digits.npz"


@pytest.fixture(scope="session")
def digits_params():
    """(params, x_test, y_test) of a numpy-trained digits MLP."""
    params, _, _, xte, yte = zoo.digits_mlp(hidden=(32,), seed=1, epochs=200)
    return params, xte, yte


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def make_digits_model(digits_params, model_dir):
    """Factory: the digits MLP exported with a given output head / batch / dtype; returns its path."""
    params, _, _ = digits_params
    cache: dict = {}

    def make(output: str = "logits", batch="N", dtype=np.float32, shape=(1, 8, 8)) -> Path:
        key = (output, batch, np.dtype(dtype).name, shape)
        if key not in cache:
            m = zoo.mlp_to_onnx(params, shape, output=output, batch=batch, dtype=dtype)
            p = model_dir / f"digits_{output}_{batch}_{np.dtype(dtype).name}_{'x'.join(map(str, shape))}.onnx"
            onnx.save(m, p)
            cache[key] = p
        return cache[key]

    return make


@pytest.fixture(scope="session")
def digits_data(digits_params, tmp_path_factory):
    _, xte, yte = digits_params
    p = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(p, x=xte[:120], y=yte[:120])
    return p


@pytest.fixture(scope="session")
def tabular(tmp_path_factory):
    """skl2onnx logistic regression on breast-cancer data, ZipMap output; (model path, data path, x, y)."""
    onx, x, y = zoo.tabular_sklearn("logreg", zipmap=True)
    d = tmp_path_factory.mktemp("tabular")
    mp = d / "cancer_logreg.onnx"
    onnx.save(onx, mp)
    dp = d / "cancer.npz"
    np.savez(dp, x=x, y=y)
    return mp, dp, x, y


@pytest.fixture(autouse=True)
def _isolated_signing_key(tmp_path_factory, monkeypatch):
    """`scan --out` signs with a per-user default key created on first use: keep tests out of ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    monkeypatch.delenv("ONNXGUARD_SIGNING_KEY", raising=False)

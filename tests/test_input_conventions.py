"""Input conventions: layout, per-channel range and normalisation, dynamic H/W, batch-1 models,
tabular bounds; each resolved value and where it came from is in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxguard.conventions import IMAGENET_MEAN, IMAGENET_STD, parse_normalize, resolve_layout
from onnxguard.errors import DataError
from onnxguard.policy import parse_policy
from onnxguard.scan import ScanOptions, run_scan

from .realsize_models import pooled_classifier

EPS = 8 / 255
POLICY = parse_policy(
    f'[policy]\nname = "conv"\nversion = "1"\n[[checks]]\nid = "sq"\nattack = "square"\nnorm = "linf"\nepsilon = {EPS}\n'
    'samples = 6\nbudget = 30\n[backdoor]\nenabled = false\n'.encode(),
    "conv.toml",
)
MEAN, STD = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)


def _pixels(n, h, w, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, h, w, 3))  # NHWC pixels in [0, 1]


def test_nhwc_imagenet_normalised_model(tmp_path):
    model = pooled_classifier(tmp_path / "nhwc.onnx", h=64, w=64, layout="NHWC", pool=8)
    px = _pixels(8, 64, 64)
    x = (px - MEAN) / STD  # what the model takes
    data = tmp_path / "d.npz"
    np.savez(data, x=x.astype(np.float32))
    adv = tmp_path / "adv"
    r = run_scan(ScanOptions(model_path=model, data_path=data, policy=POLICY, normalize="imagenet", save_adversarials=adv))
    inp = r.data.input
    assert (inp.layout, inp.layout_source, inp.channels) == ("NHWC", "shape", "rgb")
    assert inp.normalization.startswith("imagenet")
    vr = r.data.value_range
    assert vr.source == "normalization"
    np.testing.assert_allclose(vr.lo, -MEAN / STD, rtol=1e-6)
    np.testing.assert_allclose(vr.hi, (1 - MEAN) / STD, rtol=1e-6)
    chk = r.checks[0]
    assert chk.status == "completed" and chk.queries.total > 0
    # epsilon keeps its pixel meaning: no pixel of an adversarial moved by more than 8/255
    saved = np.load(adv / "sq.npz")
    d_pixels = (saved["x_adv"] - saved["x"]) * STD
    assert np.abs(d_pixels).max() <= EPS + 1e-5
    assert np.abs(d_pixels).max() > EPS / 2  # and the attack did use the budget


def test_layout_override_and_metadata(tmp_path):
    assert resolve_layout((3, 64, 64)) == ("NCHW", "shape")
    assert resolve_layout((64, 64, 3)) == ("NHWC", "shape")
    assert resolve_layout((3, 8, 3)) == ("NCHW", "assumed")
    assert resolve_layout((3, 8, 3), {"data_format": "channels_last"}) == ("NHWC", "metadata")
    assert resolve_layout((3, 8, 3), None, "nhwc") == ("NHWC", "given")
    with pytest.raises(DataError):
        resolve_layout((64, 64, 3), None, "NCHW")  # 64 channels: does not fit
    model = pooled_classifier(tmp_path / "meta.onnx", h=32, w=32, layout="NHWC", pool=8, metadata={"layout": "NHWC"})
    r = run_scan(ScanOptions(model_path=model, policy=POLICY))
    assert (r.data.input.layout, r.data.input.layout_source) == ("NHWC", "metadata")


def test_mean_std_in_255_units_and_bgr():
    n = parse_normalize("mean=103.94,116.78,123.68,std=1", 3)
    assert n.pixel_max == 255.0 and n.std == (1.0, 1.0, 1.0)
    b = parse_normalize("imagenet", 3, "bgr")
    assert b.mean == tuple(IMAGENET_MEAN[::-1])
    with pytest.raises(DataError):
        parse_normalize("mean=1,2,std=1,1", 3)


def test_per_channel_range(tmp_path):
    model = pooled_classifier(tmp_path / "nchw.onnx", h=32, w=32, pool=8)
    rng_ = ((-1.0, 1.0), (0.0, 2.0), (-3.0, 0.0))
    r = run_scan(ScanOptions(model_path=model, policy=POLICY, value_range=rng_))
    assert r.data.value_range.source == "given"
    assert r.data.value_range.lo == [-1.0, 0.0, -3.0] and r.data.value_range.hi == [1.0, 2.0, 0.0]
    assert r.data.input.layout == "NCHW"


def test_dynamic_hw_model_given_data(tmp_path):
    model = pooled_classifier(tmp_path / "dyn.onnx", h="H", w="W")
    x = np.random.default_rng(0).uniform(-1, 1, (8, 3, 48, 96)).astype(np.float32)  # a text-line classifier's shape
    data = tmp_path / "d.npy"
    np.save(data, x)
    r = run_scan(ScanOptions(model_path=model, data_path=data, policy=POLICY))
    assert r.model.sample_shape == [3, 48, 96]
    assert r.data.input.shape_source == "data"
    assert r.data.value_range.source == "data" and (r.data.value_range.lo, r.data.value_range.hi) == (-1.0, 1.0)
    assert r.checks[0].status == "completed"
    # no data: --input-shape, else nothing is guessed: the attacks are not run, and the report says why
    r2 = run_scan(ScanOptions(model_path=model, policy=POLICY, input_shape=(3, 40, 50)))
    assert r2.model.sample_shape == [3, 40, 50] and r2.data.input.shape_source == "given"
    r3 = run_scan(ScanOptions(model_path=model, policy=POLICY))
    assert r3.checks and all(c.status == "not_run" and "--input-shape" in (c.reason or "") for c in r3.checks)


def test_batch1_model(tmp_path):
    model = pooled_classifier(tmp_path / "b1.onnx", h=32, w=32, pool=8, batch=1)
    r = run_scan(ScanOptions(model_path=model, policy=POLICY))
    chk = r.checks[0]
    assert chk.status == "completed" and chk.n_attacked > 0
    assert chk.queries.max <= 30 and chk.queries.total >= chk.n_attacked


def test_constant_tabular_feature_is_listed_and_bounds_fix_it(tabular, tmp_path):
    mp, _, x, y = tabular
    x = x.copy()
    x[:, 1] = 0.5  # constant in the data
    data = tmp_path / "t.npz"
    np.savez(data, x=x, y=y)
    pol = parse_policy(b'[policy]\nname = "t"\nversion = "1"\n[[checks]]\nattack = "square"\nnorm = "linf"\nepsilon = 0.1\nsamples = 5\nbudget = 20\n[backdoor]\nenabled = false\n', "t.toml")
    r = run_scan(ScanOptions(model_path=mp, data_path=data, policy=pol))
    assert 1 in r.data.input.degenerate_features
    assert any("width 0" in n for n in r.notes)
    lo, hi = x.min(0), x.max(0)
    hi[1] = 1.0
    bounds = tmp_path / "b.json"
    bounds.write_text(json.dumps([[float(a), float(b)] for a, b in zip(lo, hi)]))
    r2 = run_scan(ScanOptions(model_path=mp, data_path=data, policy=pol, bounds_path=bounds))
    assert r2.data.value_range.source == "bounds" and r2.data.input.degenerate_features == []


def test_provider_and_threads_recorded(tmp_path):
    from onnxguard.errors import BadInputError

    model = pooled_classifier(tmp_path / "p.onnx", h=32, w=32, pool=8)
    r = run_scan(ScanOptions(model_path=model, policy=POLICY, provider="cpu", threads=1))
    assert r.environment.execution_provider == "CPUExecutionProvider"
    with pytest.raises(BadInputError, match="not offered"):
        run_scan(ScanOptions(model_path=model, policy=POLICY, provider="NoSuchExecutionProvider"))


def test_cli_conventions_flags(tmp_path):
    from onnxguard.cli import main

    model = pooled_classifier(tmp_path / "nhwc.onnx", h=32, w=32, layout="NHWC", pool=8)
    px = _pixels(6, 32, 32)
    data = tmp_path / "d.npz"
    np.savez(data, x=((px - MEAN) / STD).astype(np.float32))
    pol = tmp_path / "p.toml"
    pol.write_text(f'[policy]\nname = "c"\nversion = "1"\n[[checks]]\nattack = "square"\nnorm = "linf"\nepsilon = {EPS}\nsamples = 4\nbudget = 10\n[backdoor]\nenabled = false\n')
    out = tmp_path / "r.json"
    code = main(["scan", str(model), "--data", str(data), "--policy", str(pol), "--layout", "NHWC", "--normalize", "imagenet",
                 "--provider", "CPU", "--threads", "1", "--json", str(out), "-q"])
    assert code in (0, 1)
    rep = json.loads(out.read_text())
    assert rep["data"]["input"]["layout"] == "NHWC" and rep["data"]["input"]["layout_source"] == "given"
    assert rep["data"]["value_range"]["source"] == "normalization"
    assert main(["scan", str(model), "--policy", str(pol), "--normalize", "mean=1,2,std=1", "-q", "--no-sandbox"]) == 2
    assert main(["scan", str(model), "--policy", str(pol), "--range", "0,1;0,1", "-q", "--no-sandbox"]) == 2

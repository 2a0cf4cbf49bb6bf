"""The per-run watchdog (limits.inference_timeout_s): a run that takes too long is stopped, and the report says so."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxguard.policy import parse_policy
from onnxguard.scan import ScanOptions, run_scan
from tests.hostile import build_corpus as bc


def _slow_above(threshold: float) -> onnx.ModelProto:
    """A classifier that loops ~10^15 times when any input value exceeds ``threshold``, else not at all."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "one_b"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one_b")],
    )
    inits = bc._base_inits() + [numpy_helper.from_array(np.array(threshold, np.float32), "thr"),
                                numpy_helper.from_array(np.array(1e17, np.float32), "big"),
                                numpy_helper.from_array(np.array(True), "cond"),
                                numpy_helper.from_array(np.array(0.0, np.float32), "v0")]
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
        helper.make_node("Sub", ["mx", "thr"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Mul", ["r", "big"], ["mf"]),
        helper.make_node("Cast", ["mf"], ["M"], to=TensorProto.INT64),
        helper.make_node("Loop", ["M", "cond", "v0"], ["v"], body=body),
    ]
    return bc._model(bc._plus_zero_times("v", nodes), inits)


def test_watchdog_stops_a_slow_run_and_the_check_is_not_run_with_the_reason(tmp_path):
    model = tmp_path / "slow.onnx"
    model.write_bytes(_slow_above(0.95).SerializeToString())
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0.0, 0.9, size=(16, bc.N_IN)).astype(np.float32))
    policy = parse_policy(
        b'[policy]\nname = "wd"\nversion = "1"\n[threat_model]\nrange = [0.0, 1.0]\n'
        b'[[checks]]\nid = "sq"\nattack = "square"\nnorm = "linf"\nepsilon = 0.2\nsamples = 4\nbudget = 10\n'
        b'[backdoor]\nenabled = false\n[limits]\ninference_timeout_s = 0.5\n',
        "wd.toml",
    )
    r = run_scan(ScanOptions(model_path=model, data_path=data, policy=policy))  # the clean inputs run at once
    c = r.checks[0]
    assert c.status == "not_run" and "limits.inference_timeout_s = 0.5 s" in c.reason and "watchdog" in c.reason
    assert any("inference_timeout_s" in n for n in r.notes)
    assert any(nt.what == "check sq" for nt in r.not_tested)
    assert r.summary.verdict != "pass"  # graded by grading.not_run, never dropped


def test_the_watchdog_guards_every_kind_of_model(tmp_path):
    """Models scanned by their task (several inputs, text) run through the same watched session.run."""
    import pytest

    from onnxguard.errors import InferenceTimeout
    from onnxguard.inputs.feed import load_feed_model

    m = _slow_above(0.95)
    m.graph.input.append(helper.make_tensor_value_info("aux", TensorProto.INT64, ["N", 1]))  # held fixed per sample
    path = tmp_path / "two_inputs.onnx"
    path.write_bytes(m.SerializeToString())
    x = np.full((2, bc.N_IN), 0.5, np.float32)
    model, z = load_feed_model(path, arrays={"x": x, "aux": np.zeros((2, 1), np.int64)}, raw=None, max_bytes=1 << 26,
                               regression=False, inference_timeout_s=0.5)
    assert type(model).__name__ == "FeedModel"
    with pytest.raises(InferenceTimeout, match="watchdog"):
        model.predict(np.full((1, *model.sample_shape), 0.99), rows=np.array([0]))

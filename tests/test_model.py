"""Model loading: every output convention becomes one (N, classes) score array."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxguard.errors import ModelLoadError, NotAClassifierError
from onnxguard.model import load_model
from tests import zoo


def _reference(params, x):
    return zoo.mlp_predict(params, x).argmax(1)


@pytest.mark.parametrize("output,kind", [
    ("logits", "logits"),
    ("softmax", "probabilities"),
    ("label+probabilities", "label+probabilities"),
    ("label_only", "label"),
])
def test_output_conventions(make_digits_model, digits_params, output, kind):
    params, x, _ = digits_params
    m = load_model(make_digits_model(output), probe=x[:16])
    assert m.output_kind == kind
    out, _ = m.predict(x[:50].astype(np.float64))
    np.testing.assert_array_equal(out.labels, _reference(params, x[:50]))
    if kind == "label":
        assert out.scores is None and not m.has_scores
    else:
        assert out.scores.shape == (50, 10)
        np.testing.assert_array_equal(out.scores.argmax(1), out.labels)
        if kind != "logits":  # log-probabilities: logsumexp == 0
            lse = np.log(np.exp(out.scores).sum(1))
            np.testing.assert_allclose(lse, 0.0, atol=1e-3)


def test_log_probabilities_keep_margins(make_digits_model, digits_params):
    """Probabilities become log-probabilities: the margins equal the logits' margins."""
    _, x, _ = digits_params
    logit_m = load_model(make_digits_model("logits"), probe=x[:8])
    prob_m = load_model(make_digits_model("softmax"), probe=x[:8])
    a, _ = logit_m.predict(x[:20].astype(np.float64))
    b, _ = prob_m.predict(x[:20].astype(np.float64))
    da = a.scores - a.scores.max(1, keepdims=True)
    db = b.scores - b.scores.max(1, keepdims=True)
    np.testing.assert_allclose(da[da > -15], db[da > -15], atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_input_dtypes(make_digits_model, digits_params, dtype):
    params, x, _ = digits_params
    m = load_model(make_digits_model("logits", dtype=dtype), probe=x[:8])
    assert m.input_dtype == np.dtype(dtype)
    out, _ = m.predict(x[:40].astype(np.float64))
    agree = (out.labels == _reference(params, x[:40])).mean()
    assert agree >= (0.95 if dtype == np.float16 else 1.0)


def test_fixed_batch_of_one(make_digits_model, digits_params):
    params, x, _ = digits_params
    m = load_model(make_digits_model("logits", batch=1), probe=x[:4])
    assert m.fixed_batch == 1
    out, _ = m.predict(x[:7].astype(np.float64))
    np.testing.assert_array_equal(out.labels, _reference(params, x[:7]))


def test_dynamic_axes_resolved_from_data(digits_params, tmp_path):
    params, x, _ = digits_params
    mdl = zoo.mlp_to_onnx(params, (1, 8, 8), output="logits")
    mdl.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    mdl.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "W"
    p = tmp_path / "dyn.onnx"
    onnx.save(mdl, p)
    with pytest.raises(NotAClassifierError, match="dynamic axes"):
        load_model(p)  # the scan turns this into a report whose attacks are not run (tests/test_tasks.py)
    m = load_model(p, probe=x[:4])
    assert m.sample_shape == (1, 8, 8)


def test_sigmoid_binary(tmp_path):
    rng = np.random.default_rng(0)
    params = [(rng.normal(size=(4, 1)), np.zeros(1))]
    p = tmp_path / "sig.onnx"
    onnx.save(zoo.mlp_to_onnx(params, (4,), output="sigmoid"), p)
    m = load_model(p)
    assert m.output_kind == "sigmoid" and m.n_classes == 2
    x = rng.uniform(size=(30, 4))
    out, _ = m.predict(x)
    np.testing.assert_array_equal(out.labels, (x @ params[0][0] > 0).ravel().astype(int))


@pytest.mark.parametrize("zipmap", [True, False])
def test_sklearn_label_and_probabilities(zipmap, tmp_path):
    onx, x, y = zoo.tabular_sklearn("logreg", zipmap=zipmap)
    p = tmp_path / "lr.onnx"
    onnx.save(onx, p)
    m = load_model(p, probe=x[:8])
    assert m.output_kind == ("zipmap" if zipmap else "label+probabilities")
    assert m.n_classes == 2 and m.class_labels in (None, [0, 1])
    out, _ = m.predict(x.astype(np.float64))
    assert out.scores.shape == (len(x), 2)
    assert (out.labels == y).mean() > 0.9
    np.testing.assert_array_equal(out.scores.argmax(1), out.labels)


def test_string_class_labels(tmp_path):
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    d = load_iris()
    names = np.array(d.target_names)[d.target]
    clf = LogisticRegression(max_iter=1000).fit(d.data, names)
    p = tmp_path / "iris.onnx"
    onnx.save(to_onnx(clf, d.data[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3}), p)
    m = load_model(p)
    assert m.class_labels == ["setosa", "versicolor", "virginica"]
    out, _ = m.predict(d.data.astype(np.float64))
    assert (np.array(m.class_labels)[out.labels] == clf.predict(d.data)).all()


def _graph(inputs, outputs, nodes, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_regression_is_not_a_classifier(tmp_path):
    w = onnx.numpy_helper.from_array(np.ones((4, 1), np.float32), "W")
    m = _graph([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
               [helper.make_node("MatMul", ["x", "W"], ["y"])], [w])
    p = tmp_path / "reg.onnx"
    onnx.save(m, p)
    with pytest.raises(NotAClassifierError, match="regression"):
        load_model(p)


def test_detector_is_not_a_classifier(tmp_path):
    shape = onnx.numpy_helper.from_array(np.array([-1, 4, 4], np.int64), "s")
    m = _graph([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
               [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4, 4])],
               [helper.make_node("Reshape", ["x", "s"], ["boxes"])], [shape])
    p = tmp_path / "det.onnx"
    onnx.save(m, p)
    with pytest.raises(NotAClassifierError, match="detector"):
        load_model(p)


def test_two_inputs_is_refused_clearly(tmp_path):
    m = _graph([helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
               [helper.make_node("Add", ["a", "b"], ["y"])])
    p = tmp_path / "two.onnx"
    onnx.save(m, p)
    with pytest.raises(NotAClassifierError, match="2 inputs"):  # load_model's path; the scan attacks both jointly (tests/test_tasks.py)
        load_model(p)


def test_malformed_file(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"\x08\x07this is not a protobuf model\xff\xfe" * 10)
    with pytest.raises(ModelLoadError):
        load_model(p)

"""Small models for tests and examples, built from scikit-learn's bundled data.

Pure numpy training (no torch needed) and hand-written ONNX graphs, so the
test suite can rebuild every model it uses, deterministically, in seconds.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn digits as (N, 1, 8, 8) images in [0, 1]; a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = perm[:cut], perm[cut:]
    return x[tr], y[tr], x[te], y[te]


def train_mlp(
    x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...] = (64,), n_classes: int | None = None,
    epochs: int = 300, lr: float = 0.01, seed: int = 0, weight_decay: float = 1e-4,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Full-batch Adam on cross-entropy; returns [(W, b), ...] with W of shape (in, out)."""
    rng = np.random.default_rng(seed)
    xf = x.reshape(len(x), -1).astype(np.float64)
    c = n_classes or int(y.max()) + 1
    sizes = [xf.shape[1], *hidden, c]
    params = [(rng.normal(0, np.sqrt(2.0 / a), size=(a, b)), np.zeros(b)) for a, b in zip(sizes[:-1], sizes[1:])]
    m = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    v = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    onehot = np.eye(c)[y]
    for t in range(1, epochs + 1):
        acts = [xf]
        h = xf
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        logits = acts[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(xf)
        grads = []
        for i in range(len(params) - 1, -1, -1):
            w, b = params[i]
            gw = acts[i].T @ g + weight_decay * w
            gb = g.sum(axis=0)
            grads.append((gw, gb))
            if i > 0:
                g = (g @ w.T) * (acts[i] > 0)
        grads.reverse()
        for i, ((w, b), (gw, gb)) in enumerate(zip(params, grads)):
            mw, mb = m[i]
            vw, vb = v[i]
            mw = 0.9 * mw + 0.1 * gw
            mb = 0.9 * mb + 0.1 * gb
            vw = 0.999 * vw + 0.001 * gw**2
            vb = 0.999 * vb + 0.001 * gb**2
            m[i], v[i] = (mw, mb), (vw, vb)
            c1, c2 = 1 - 0.9**t, 1 - 0.999**t
            w = w - lr * (mw / c1) / (np.sqrt(vw / c2) + 1e-8)
            b = b - lr * (mb / c1) / (np.sqrt(vb / c2) + 1e-8)
            params[i] = (w, b)
    return params


def mlp_predict(params: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    h = x.reshape(len(x), -1).astype(np.float64)
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = np.maximum(h, 0)
    return h


_NP2ONNX = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.float64: TensorProto.DOUBLE}


def mlp_to_onnx(
    params: list[tuple[np.ndarray, np.ndarray]],
    sample_shape: tuple[int, ...],
    *,
    output: str = "logits",  # logits | softmax | label_only | label+probabilities | sigmoid
    batch: int | str | None = "N",
    dtype: type = np.float32,
    name: str = "mlp",
) -> onnx.ModelProto:
    """An MLP as an ONNX graph: Flatten, (Gemm, Relu)*, Gemm, then the chosen output head."""
    et = _NP2ONNX[dtype]
    inits, nodes = [], []
    nodes.append(helper.make_node("Flatten", ["input"], ["h0"], axis=1))
    cur = "h0"
    for i, (w, b) in enumerate(params):
        inits.append(numpy_helper.from_array(w.astype(dtype), f"W{i}"))
        inits.append(numpy_helper.from_array(b.astype(dtype), f"B{i}"))
        out = f"z{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out]))
        cur = out
        if i < len(params) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"a{i}"]))
            cur = f"a{i}"
    c = params[-1][0].shape[1]
    outputs = []
    if output == "logits":
        nodes.append(helper.make_node("Identity", [cur], ["logits"]))
        outputs.append(helper.make_tensor_value_info("logits", et, [batch, c]))
    elif output == "softmax":
        nodes.append(helper.make_node("Softmax", [cur], ["probabilities"], axis=1))
        outputs.append(helper.make_tensor_value_info("probabilities", et, [batch, c]))
    elif output == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [cur], ["probability"]))
        outputs.append(helper.make_tensor_value_info("probability", et, [batch, c]))
    elif output == "label_only":
        nodes.append(helper.make_node("ArgMax", [cur], ["label"], axis=1, keepdims=0))
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, [batch]))
    elif output == "label+probabilities":
        nodes.append(helper.make_node("ArgMax", [cur], ["label"], axis=1, keepdims=0))
        nodes.append(helper.make_node("Softmax", [cur], ["probabilities"], axis=1))
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, [batch]))
        outputs.append(helper.make_tensor_value_info("probabilities", et, [batch, c]))
    else:
        raise ValueError(output)
    inp = helper.make_tensor_value_info("input", et, [batch, *sample_shape])
    graph = helper.make_graph(nodes, name, [inp], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnxguard-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def digits_mlp(hidden: tuple[int, ...] = (64,), seed: int = 0, epochs: int = 300) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xtr, ytr, xte, yte = digits()
    params = train_mlp(xtr, ytr, hidden=hidden, epochs=epochs, seed=seed)
    return params, xtr, ytr, xte, yte


def tabular_sklearn(kind: str = "logreg", zipmap: bool = True, seed: int = 0):
    """A scikit-learn classifier on the bundled breast-cancer data, converted with skl2onnx.

    Returns (onnx model, x_test float32, y_test)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = load_breast_cancer()
    x = d.data.astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.75 * len(x))
    tr, te = perm[:cut], perm[cut:]
    if kind == "logreg":
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=10.0))
    elif kind == "mlp":
        clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=2000, random_state=seed))
    else:
        raise ValueError(kind)
    clf.fit(x[tr], y[tr])
    onx = to_onnx(clf, x[:1], target_opset={"": OPSET, "ai.onnx.ml": 3}, options={type(clf.steps[-1][1]): {"zipmap": zipmap}})
    return onx, x[te], y[te]


def digits16(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn digits upsampled (bilinear) to (N, 1, 16, 16) in [0, 1]; same split as ``digits``."""
    from scipy.ndimage import zoom

    xtr, ytr, xte, yte = digits(seed)

    def up(x: np.ndarray) -> np.ndarray:
        return np.clip(zoom(x, (1, 1, 2, 2), order=1), 0, 1).astype(np.float32)

    return up(xtr), ytr, up(xte), yte


def cnn_to_onnx(weights: dict[str, np.ndarray], sample_shape: tuple[int, ...] = (1, 16, 16), name: str = "cnn") -> onnx.ModelProto:
    """Conv(3x3)-ReLU-MaxPool x2, then Gemm-ReLU-Gemm (logits). ``weights`` keys: c1.w c1.b c2.w c2.b f1.w f1.b f2.w f2.b
    (torch layout: conv (out, in, kh, kw); linear (out, in))."""
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]
    n = helper.make_node
    nodes = [
        n("Conv", ["input", "c1.w", "c1.b"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("Relu", ["c1"], ["r1"]),
        n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "c2.w", "c2.b"], ["c2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("Relu", ["c2"], ["r2"]),
        n("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Flatten", ["p2"], ["f"], axis=1),
        n("Gemm", ["f", "f1.w", "f1.b"], ["h"], transB=1),
        n("Relu", ["h"], ["hr"]),
        n("Gemm", ["hr", "f2.w", "f2.b"], ["logits"], transB=1),
    ]
    c = weights["f2.b"].shape[0]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *sample_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnxguard-examples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model

"""Small, fast ONNX image classifiers at realistic input sizes and conventions, built with onnx.helper.

``pooled_classifier``: (optional NHWC transpose) -> (optional (x - mean) / std, done by the model's caller
convention, so the graph takes already-normalised input) -> AveragePool k x k -> Flatten -> Gemm (logits).
Cheap at 224x224 (one pooling pass and a small matmul), yet every pixel matters to the output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def pooled_classifier(
    path: Path,
    *,
    c: int = 3,
    h: int | str = 224,
    w: int | str = 224,
    layout: str = "NCHW",
    batch: int | str = "N",
    classes: int = 10,
    pool: int = 16,
    grid: int | None = None,
    seed: int = 0,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write the model to ``path``. With dynamic ``h``/``w``, ``grid`` (cells per side after a
    GlobalAveragePool-free adaptive step is impossible in plain ONNX) must be given: the model then pools
    with ReduceMean over the spatial axes into ``c`` features per image (any size works)."""
    rng = np.random.default_rng(seed)
    n = helper.make_node
    nodes = []
    x_name = "input"
    if layout == "NHWC":
        nodes.append(n("Transpose", ["input"], ["chw"], perm=[0, 3, 1, 2]))
        x_name = "chw"
    inits = []
    if isinstance(h, int) and isinstance(w, int):
        nodes.append(n("AveragePool", [x_name], ["p"], kernel_shape=[pool, pool], strides=[pool, pool]))
        feats = c * (h // pool) * (w // pool)
        nodes.append(n("Flatten", ["p"], ["f"], axis=1))
    else:
        # dynamic spatial axes: mean of each channel over the top/bottom and left/right halves is not
        # expressible without shapes, so use per-channel mean and max (2c features)
        nodes.append(n("ReduceMean", [x_name], ["mean"], axes=[2, 3], keepdims=0))
        nodes.append(n("ReduceMax", [x_name], ["max"], axes=[2, 3], keepdims=0))
        nodes.append(n("Concat", ["mean", "max"], ["f"], axis=1))
        feats = 2 * c
    wmat = (rng.standard_normal((classes, feats)) / np.sqrt(feats) * 4.0).astype(np.float32)
    inits += [numpy_helper.from_array(wmat, "W"), numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32) * 0.1, "b")]
    nodes.append(n("Gemm", ["f", "W", "b"], ["logits"], transB=1))
    shape = [batch, c, h, w] if layout == "NCHW" else [batch, h, w, c]
    graph = helper.make_graph(
        nodes, "pooled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxguard-tests")
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path

"""Small models of every task for the task / text / regressor tests, built from data the tests generate.

* ``sentiment_texts``: generated reviews, one sentiment word among neutral filler;
* ``tfidf_pipeline``: scikit-learn TF-IDF + logistic regression, exported by skl2onnx (string input);
* ``token_model``: a bag-of-embeddings classifier over a WordLevel ``tokenizer.json`` trained by
  ``tokenizers`` on the generated texts (inputs input_ids, attention_mask, token_type_ids);
* ``regressor``: a linear regressor (one float output);
* ``two_input``: a classifier over two float inputs and an integer input held fixed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

POS = ["good", "great", "excellent", "wonderful", "fantastic", "superb", "lovely", "brilliant"]
NEG = ["bad", "awful", "terrible", "horrible", "dreadful", "poor", "boring", "mediocre"]
NEUTRAL = ["the", "movie", "was", "and", "plot", "actors", "scene", "story", "film", "it", "this", "with", "of", "ending",
           "music", "camera", "director", "cast", "script", "night", "cinema", "popcorn", "seats", "screen", "sound", "light",
           "friday", "tickets", "trailer", "sequel", "dialogue", "pacing", "costumes", "set", "hours", "minutes", "theatre",
           "audience", "credits", "studio"]


def sentiment_texts(n: int, seed: int = 0, filler: tuple[int, int] = (11, 15)) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, ys = [], []
    for _ in range(n):
        y = int(rng.integers(0, 2))
        words = list(rng.choice(NEUTRAL, size=int(rng.integers(*filler))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POS if y else NEG)))
        texts.append(" ".join(words))
        ys.append(y)
    return texts, np.array(ys, dtype=np.int64)


def tfidf_pipeline(path: Path, texts: list[str], y: np.ndarray) -> Path:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # lowercase=False: skl2onnx's StringNormalizer needs an en_US locale the test machine may not have
    pipe = make_pipeline(TfidfVectorizer(lowercase=False), LogisticRegression(C=100.0, max_iter=2000)).fit(texts, y)
    onx = to_onnx(pipe, initial_types=[("text", StringTensorType([None, 1]))],
                  options={LogisticRegression: {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    onnx.save(onx, path)
    return path


def train_tokenizer(path: Path, texts: list[str]) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    tok.save(str(path))
    return tok


def token_model(folder: Path, texts: list[str], y: np.ndarray, dim: int = 8, seed: int = 0) -> Path:
    """model.onnx + tokenizer.json in ``folder``: mean of token embeddings (masked), then a linear layer."""
    tok = train_tokenizer(folder / "tokenizer.json", texts)
    v = tok.get_vocab_size()  # type: ignore[attr-defined]
    encs = tok.encode_batch(texts)  # type: ignore[attr-defined]
    bag = np.zeros((len(texts), v))
    for i, e in enumerate(encs):
        for t in e.ids:
            bag[i, t] += 1.0 / len(e.ids)
    # logistic regression on the mean one-hot, by gradient descent
    w = np.zeros((v, 2))
    b = np.zeros(2)
    onehot = np.eye(2)[y]
    for _ in range(3000):
        s = bag @ w + b
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(bag)
        w -= 20.0 * (bag.T @ g + 1e-5 * w)
        b -= 20.0 * g.sum(0)
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(2, dim))
    emb = (w @ proj).astype(np.float32)
    emb[0] = 0.0  # [PAD]
    head = np.linalg.pinv(proj).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "ax2"], ["m3"]),
        helper.make_node("Mul", ["emb", "m3"], ["me"]),
        helper.make_node("ReduceSum", ["me", "ax1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m", "ax1"], ["cnt"], keepdims=1),
        helper.make_node("Max", ["cnt", "one"], ["cnt1"]),
        helper.make_node("Div", ["s", "cnt1"], ["mean"]),
        helper.make_node("MatMul", ["mean", "H"], ["h"]),
        helper.make_node("Add", ["h", "B"], ["h2"]),
        helper.make_node("Cast", ["token_type_ids"], ["tt"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["tt", "ax1"], ["tts"], keepdims=1),
        helper.make_node("Mul", ["tts", "zero"], ["tt0"]),
        helper.make_node("Add", ["h2", "tt0"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(emb, "E"), numpy_helper.from_array(head, "H"), numpy_helper.from_array(b.astype(np.float32), "B"),
             numpy_helper.from_array(np.array([2], np.int64), "ax2"), numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"), numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "L"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    g = helper.make_graph(nodes, "bag", ins, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    p = folder / "model.onnx"
    onnx.save(m, p)
    return p


def regressor(path: Path, n_features: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_features, 1)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    g = helper.make_graph(nodes, "reg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_features])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([0.5], np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def two_input(path: Path, seed: int = 0) -> Path:
    """logits = [a, b, float(mode)] @ W: two float inputs (4 and 3 features) and an int64 input held fixed."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(8, 3)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["mode"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Concat", ["a", "b", "mf"], ["x"], axis=1),
             helper.make_node("MatMul", ["x", "W"], ["logits"])]
    ins = [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]), helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3]),
           helper.make_tensor_value_info("mode", TensorProto.INT64, ["N", 1])]
    g = helper.make_graph(nodes, "two", ins, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path

"""Every valid ONNX model gets a graded report: text (TF-IDF, token ids + tokenizer.json, id space), regressors,
multi-input models, a dynamic-axes image model without data, models that cannot run."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxguard.cli import main
from tests import task_zoo as tz
from tests import zoo

POLICY = """
[policy]
name = "tasks"
version = "1"
[[checks]]
id = "square-linf"
attack = "square"
norm = "linf"
epsilon = 0.05
samples = 10
budget = 100
[[checks]]
id = "char-edit-chars"
attack = "char-edit"
norm = "chars"
epsilon = [0.02, 0.05]
samples = 20
budget = 200
[[checks]]
id = "token-swap-tokens"
attack = "token-swap"
norm = "tokens"
epsilon = 0.1
samples = 20
budget = 200
[[checks]]
id = "reg-square-linf"
attack = "reg-square"
norm = "linf"
epsilon = 0.05
samples = 10
budget = 60
tolerance = 0.1
[backdoor]
enabled = true
budget = 2000
"""


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    texts, y = tz.sentiment_texts(360, seed=0)
    tz.tfidf_pipeline(d / "tfidf.onnx", texts[:260], y[:260])
    (d / "tok").mkdir()
    tz.token_model(d / "tok", texts[:260], y[:260])
    (d / "ids").mkdir()
    shutil.copy(d / "tok" / "model.onnx", d / "ids" / "model.onnx")  # the same model, no tokenizer beside it
    with open(d / "test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, lab in zip(texts[260:], y[260:]):
            w.writerow([t, int(lab)])
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(d / "tok" / "tokenizer.json"))
    enc = tok.encode_batch(texts[260:])
    L = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), L), np.int64)
    for i, e in enumerate(enc):
        ids[i, :len(e.ids)] = e.ids
    np.savez(d / "ids.npz", input_ids=ids, attention_mask=(ids != 0).astype(np.int64), y=y[260:])
    tz.regressor(d / "reg.onnx")
    tz.two_input(d / "two.onnx")
    rng = np.random.default_rng(0)
    np.savez(d / "two.npz", a=rng.uniform(size=(30, 4)), b=rng.uniform(size=(30, 3)), mode=rng.integers(0, 3, size=(30, 1)))
    params, _, _, _, _ = zoo.digits_mlp(hidden=(16,), seed=1, epochs=30)
    m = zoo.mlp_to_onnx(params, (1, 8, 8), output="logits")
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "W"
    onnx.save(m, d / "dyn.onnx")
    (d / "policy.toml").write_text(POLICY)
    return d


def _scan(d, model, *extra, sandbox=False):
    out = d / (model.replace("/", "_") + "".join(extra).replace("/", "_").replace("-", "")[:40] + ".json")
    args = ["scan", str(d / model), "--policy", str(d / "policy.toml"), "-q", "--json", str(out), *extra]
    code = main(args + ([] if sandbox else ["--no-sandbox"]))
    rep = json.loads(out.read_text())
    verdict = rep["summary"]["verdict"]
    assert code == (1 if verdict == "fail" else 0), (code, verdict)  # the exit code follows the verdict
    return rep


def _check(rep, cid):
    return next(c for c in rep["checks"] if c["id"] == cid)


def test_tfidf_pipeline_gets_a_graded_text_report(zoo_dir):
    rep = _scan(zoo_dir, "tfidf.onnx", "--data", str(zoo_dir / "test.csv"), sandbox=True)
    assert rep["model"]["task"] == "text-classifier"
    assert [s["space"] for s in rep["model"]["input_spaces"]] == ["text"]
    c = _check(rep, "char-edit-chars")
    assert c["status"] == "completed" and c["space"] == "text" and c["edit_unit"] == "characters"
    assert c["success_rate"]["n"] > 0 and c["grades"] and c["queries"]["max"] <= 200
    assert len(c["robustness_curve"]) == 2
    na = {n["what"] for n in rep["not_applicable"]}
    assert {"check square-linf", "check reg-square-linf", "check token-swap-tokens"} <= na
    assert rep["backdoor"]["status"] == "not_run"  # graded by not_run: text backdoors are not searched


def test_token_model_with_tokenizer_json(zoo_dir):
    rep = _scan(zoo_dir, "tok/model.onnx", "--data", str(zoo_dir / "test.csv"))
    spaces = {s["name"]: s["space"] for s in rep["model"]["input_spaces"]}
    assert spaces == {"input_ids": "text", "attention_mask": "fixed", "token_type_ids": "fixed"}
    assert rep["model"]["tokenizer"]["path"].endswith("tokenizer.json")
    assert _check(rep, "char-edit-chars")["status"] == "completed"


def test_token_model_without_tokenizer_is_attacked_in_id_space(zoo_dir):
    rep = _scan(zoo_dir, "ids/model.onnx", "--data", str(zoo_dir / "ids.npz"))
    c = _check(rep, "token-swap-tokens")
    assert c["status"] == "completed" and c["space"] == "tokens"
    assert "id space" in c["finding"] and "embedding" in c["substitutes"]
    assert c["success_rate"]["successes"] > 0
    assert any(n["what"] == "check char-edit-chars" for n in rep["not_applicable"])


def test_text_model_without_data_is_graded_not_run(zoo_dir):
    rep = _scan(zoo_dir, "tfidf.onnx")
    c = _check(rep, "char-edit-chars")
    assert c["status"] == "not_run" and "--data" in c["reason"]
    assert any("char-edit-chars" in g["metric"] and "not_run" in g["rule"] for g in c["grades"])


def test_regressor_report(zoo_dir):
    rep = _scan(zoo_dir, "reg.onnx")
    assert rep["model"]["task"] == "regressor"
    c = _check(rep, "reg-square-linf")
    assert c["status"] == "completed" and c["tolerance"] > 0 and c["output_change"]["n"] == c["n_attacked"]
    assert c["queries"]["max"] <= 60
    assert rep["backdoor"] is None and any(n["what"] == "backdoor search" for n in rep["not_applicable"])
    assert not any("backdoor" in r for r in rep["summary"]["reasons"])  # no classes: not applicable, not graded


def test_two_input_classifier_attacks_float_inputs_jointly(zoo_dir):
    rep = _scan(zoo_dir, "two.onnx", "--data", str(zoo_dir / "two.npz"))
    spaces = {s["name"]: s["space"] for s in rep["model"]["input_spaces"]}
    assert spaces == {"a": "box", "b": "box", "mode": "fixed"}
    assert rep["model"]["sample_shape"] == [7]
    c = _check(rep, "square-linf")
    assert c["status"] == "completed" and c["space"] == "box"
    assert rep["backdoor"]["status"] == "not_run"
    assert any("'mode'" in n for n in rep["notes"])


def test_fixed_inputs_are_held_at_each_samples_values(zoo_dir):
    import onnxruntime as ort

    from onnxguard.inputs.feed import load_feed_model
    from onnxguard.oracle import Domain, Oracle
    from onnxguard.safeload import read_model

    z = np.load(zoo_dir / "two.npz")
    arrays = {k: z[k] for k in ("a", "b", "mode")}
    model, x = load_feed_model(zoo_dir / "two.onnx", arrays=arrays, raw=read_model(zoo_dir / "two.onnx", max_bytes=1 << 30), max_bytes=1 << 30, regression=False)
    dom = Domain(np.zeros(7), np.ones(7))
    o = Oracle(model, dom, n_samples=5, budget=None, rows=np.array([3, 4, 5, 6, 7]))
    labels = o.labels(x[3:8], np.arange(5))
    ref = ort.InferenceSession(str(zoo_dir / "two.onnx")).run(None, {"a": z["a"][3:8].astype(np.float32), "b": z["b"][3:8].astype(np.float32),
                                                                     "mode": z["mode"][3:8]})[0].argmax(1)
    np.testing.assert_array_equal(labels, ref)


def test_dynamic_axes_image_model_without_data(zoo_dir):
    rep = _scan(zoo_dir, "dyn.onnx", sandbox=True)
    c = _check(rep, "square-linf")
    assert c["status"] == "not_run" and "dynamic axes" in c["reason"]
    assert c["grades"][0]["verdict"] == "warn"  # grading.not_run
    assert rep["backdoor"]["status"] == "not_run"
    assert {n["what"] for n in rep["not_applicable"]} >= {"check char-edit-chars", "check reg-square-linf"}


def test_detector_and_cannot_run_models(zoo_dir, tmp_path):
    shape = numpy_helper.from_array(np.array([-1, 4, 4], np.int64), "s")
    g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["boxes"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4, 4])], [shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, zoo_dir / "det.onnx")
    rep = _scan(zoo_dir, "det.onnx")
    assert rep["model"]["task"] == "other" and rep["model"]["task_detail"] == "detector"
    assert _check(rep, "square-linf")["status"] == "not_run"
    g2 = helper.make_graph([helper.make_node("Mystery", ["x"], ["y"], domain="com.example.custom")], "g",
                           [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    m2 = helper.make_model(g2, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.custom", 1)])
    m2.ir_version = 8
    onnx.save(m2, zoo_dir / "custom.onnx")
    rep = _scan(zoo_dir, "custom.onnx")
    assert rep["model_ran"] is False and any("static-only" in n for n in rep["notes"])
    assert all(c["status"] == "not_run" and "cannot be run" in c["reason"] for c in rep["checks"])
    assert rep["summary"]["verdict"] in ("warn", "fail")


def test_policy_show_explains_what_applies(capsys):
    assert main(["policy", "show", "standard"]) == 0
    out = capsys.readouterr().out
    assert "which checks apply to which models" in out and "text classifiers" in out and "regressors" in out


def test_saved_adversarial_texts_and_the_page_marks_the_edits(zoo_dir, tmp_path):
    adv = tmp_path / "adv"
    page = tmp_path / "page.html"
    rep = _scan(zoo_dir, "tfidf.onnx", "--data", str(zoo_dir / "test.csv"), "--save-adversarials", str(adv), "--html", str(page))
    c = _check(rep, "char-edit-chars")
    lines = [json.loads(x) for x in (adv / "char-edit-chars.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == c["n_attacked"] and sum(x["success"] for x in lines) == c["success_rate"]["successes"]
    ex = c["examples"][0]
    assert ex["success"] and ex["original"] != ex["adversarial"] and ex["marked"]
    html = page.read_text(encoding="utf-8")
    a, b = ex["marked"][0]
    assert f"<mark>{ex['adversarial'][a:b]}</mark>" in html and "original" in html


def test_text_data_formats(zoo_dir, tmp_path):
    from onnxguard.errors import DataError
    from onnxguard.nlp.data import load_texts

    rows = list(csv.reader(open(zoo_dir / "test.csv", newline="")))[1:]
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t, "label": int(lab)}) for t, lab in rows), encoding="utf-8")
    npz = tmp_path / "t.npz"
    np.savez(npz, texts=np.array([t for t, _ in rows]), y=np.array([int(lab) for _, lab in rows]))
    a, b = load_texts(jl), load_texts(npz)
    assert a.texts == b.texts == [t for t, _ in rows] and (a.y == b.y).all()
    rep = _scan(zoo_dir, "tok/model.onnx", "--data", str(jl))
    assert rep["data"]["labels"] == "given" and _check(rep, "char-edit-chars")["status"] == "completed"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="line 2"):
        load_texts(bad)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("a,b\n1,2\n")
    assert main(["scan", str(zoo_dir / "tfidf.onnx"), "--data", str(nocol), "-q", "--no-sandbox"]) == 2


def test_hostile_tokenizer_files_are_refused(zoo_dir, tmp_path):
    import os

    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(zoo_dir / "tok" / "model.onnx", d / "model.onnx")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE\n")
    os.symlink(secret, d / "tokenizer.json")
    out = tmp_path / "r.json"
    # a symlinked tokenizer.json is not picked up: the model is scanned in id space (no data: not run)
    code = main(["scan", str(d / "model.onnx"), "-q", "--no-sandbox", "--json", str(out)])
    assert code in (0, 1) and "TOP-SECRET" not in out.read_text()
    os.unlink(d / "tokenizer.json")
    os.link(secret, d / "tokenizer.json")
    assert main(["scan", str(d / "model.onnx"), "-q", "--no-sandbox"]) == 2  # hard link: refused
    os.unlink(d / "tokenizer.json")
    (d / "tokenizer.json").write_text("TOP-SECRET-VALUE")
    assert main(["scan", str(d / "model.onnx"), "-q", "--no-sandbox", "--data", str(zoo_dir / "test.csv")]) == 2


def test_labels_only_threat_model_text_checks_are_graded_not_run(zoo_dir, tmp_path):
    pol = tmp_path / "labels.toml"
    pol.write_text(POLICY.replace('[policy]\nname = "tasks"\nversion = "1"', '[policy]\nname = "labels"\nversion = "1"\n[threat_model]\naccess = "labels"'))
    out = tmp_path / "l.json"
    main(["scan", str(zoo_dir / "tfidf.onnx"), "--data", str(zoo_dir / "test.csv"), "--policy", str(pol), "-q", "--no-sandbox", "--json", str(out)])
    c = _check(json.loads(out.read_text()), "char-edit-chars")
    assert c["status"] == "not_run" and "labels-only" in c["reason"] and c["grades"][0]["verdict"] == "warn"

"""The command line: real scans of small models, reports, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from onnxguard.cli import main
from onnxguard.report import Report, stable_view
from tests.conftest import EXAMPLE_DATA, EXAMPLE_MODEL

QUICK_POLICY = """
[policy]
name = "quick"
version = "0"

[[checks]]
id = "square-linf"
attack = "square"
norm = "linf"
epsilon = [0.05, 0.3]
samples = 20
budget = 60

[[checks]]
id = "fd-pgd-l2"
attack = "fd-pgd"
norm = "l2"
epsilon = 1.0
samples = 10
budget = 300

[backdoor]
enabled = false
"""


@pytest.fixture()
def quick_policy(tmp_path):
    p = tmp_path / "quick.toml"
    p.write_text(QUICK_POLICY)
    return p


def test_scan_writes_report(tmp_path, quick_policy, capsys):
    code, rep = _plain_report(tmp_path, [str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(quick_policy)], sandbox=True)
    assert code in (0, 1)
    text = capsys.readouterr().out
    assert "square-linf" in text and "verdict" in text
    assert rep.model.sha256 and rep.data.n_samples == 360 and not rep.data.synthetic
    sq = rep.checks[0]
    assert sq.status == "completed" and sq.success_rate.n == sq.n_attacked
    assert sq.success_rate.ci.low <= sq.success_rate.value <= sq.success_rate.ci.high
    assert sq.queries.budget_per_sample == 60
    assert sq.queries.max <= 60 * 2  # the curve's bisection: at most 1 + log2(2) runs of 60 queries
    assert [p.epsilon for p in sq.robustness_curve] == [0.05, 0.3]


def _plain_report(tmp_path, args, sandbox=False):
    """Scan through the CLI and read back the plain report (``--json``); sandboxed like a user's scan when asked."""
    out = tmp_path / "plain.json"
    code = main(["scan", *args, "--json", str(out), "-q", *([] if sandbox else ["--no-sandbox"])])
    return code, Report.model_validate_json(out.read_text())


def test_same_seed_same_report(tmp_path, quick_policy):
    args = [str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(quick_policy), "--seed", "7"]
    _, a = _plain_report(tmp_path, args, sandbox=True)
    _, b = _plain_report(tmp_path, args)
    assert stable_view(a) == stable_view(b)
    _, c = _plain_report(tmp_path, [*args[:-1], "8"])
    assert stable_view(a) != stable_view(c)


def test_synthetic_evidence_is_marked(tmp_path, quick_policy):
    _, rep = _plain_report(tmp_path, [str(EXAMPLE_MODEL), "--policy", str(quick_policy)])
    assert rep.data.synthetic and rep.data.labels == "model_predictions"
    assert any("synthetic" in n for n in rep.notes)


def test_unknown_model_end_to_end(tmp_path, quick_policy, tabular):
    """A model the other tests never scan end to end: skl2onnx ZipMap on CSV data."""
    mp, _, x, y = tabular
    csv = tmp_path / "d.csv"
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])
    rows = [",".join(map(str, r.tolist() + [int(t)])) for r, t in zip(x, y)]
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    code, rep = _plain_report(tmp_path, [str(mp), "--data", str(csv), "--policy", str(quick_policy)])
    assert rep.model.output_kind == "zipmap" and rep.data.labels == "given"
    assert rep.data.value_range.source == "data" and isinstance(rep.data.value_range.lo, list)
    assert rep.clean_accuracy.value > 0.9


def test_attack_command(capsys):
    code = main(["attack", "square", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--norm", "linf", "--epsilon", "0.3", "--budget", "200", "--samples", "30", "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "success rate" in out and "n=" in out and "wall time" in out


def test_regressor_gets_a_graded_report(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    w = onnx.numpy_helper.from_array(np.ones((4, 1), np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / "reg.onnx"
    onnx.save(m, p)
    out = tmp_path / "r.json"
    code = main(["scan", str(p), "-q", "--json", str(out), "--budget", "20", "--samples", "5"])
    rep = json.loads(out.read_text())
    assert rep["model"]["task"] == "regressor" and rep["summary"]["verdict"] in ("pass", "warn", "fail")
    assert code == (1 if rep["summary"]["verdict"] == "fail" else 0)  # the exit code follows the verdict
    assert any(c["attack"].startswith("reg-") and c["status"] == "completed" for c in rep["checks"])
    assert "Traceback" not in capsys.readouterr().err


def test_malformed_exit_2_subprocess(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"not an onnx model at all" * 20)
    r = subprocess.run([sys.executable, "-m", "onnxguard", "scan", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "not a valid ONNX model" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["scan", "missing.onnx"], "not found"),
    (["scan", str(EXAMPLE_MODEL), "--range", "1,0"], "lo < hi"),
    (["attack", "nosuch", str(EXAMPLE_MODEL), "--epsilon", "0.1"], "attack"),
    (["scan", str(EXAMPLE_MODEL), "--policy", "nosuch"], "unknown policy"),
])
def test_bad_usage_exit_2(args, needle, capsys):
    assert main(args) == 2
    cap = capsys.readouterr()
    assert needle in cap.err + cap.out


def test_wrong_data_shape_exit_2(tmp_path, capsys):
    d = tmp_path / "d.npz"
    np.savez(d, x=np.zeros((5, 3)))
    assert main(["scan", str(EXAMPLE_MODEL), "--data", str(d)]) == 2
    assert "shape" in capsys.readouterr().err


def test_schema_command_is_json(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "onnxguard risk report"

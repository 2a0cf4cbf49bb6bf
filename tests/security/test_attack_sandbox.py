"""`onnxguard attack` gets the same protection as `scan`: safe load, static refusals, sandbox, watchdog.
`--transfer-from` surrogates get the static refusals too."""

from __future__ import annotations

import json

import pytest

from onnxguard.report import stable_view
from onnxguard.cli import main
from tests.hostile import build_corpus as bc

from .conftest import EXAMPLE_DATA, EXAMPLE_MODEL, TINY_PASS


def _save(tmp_path, m, name="model.onnx"):
    d = tmp_path / name.split(".")[0]
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(m.SerializeToString())
    return p


def _attack(model, *extra):
    return main(["attack", "square", str(model), "--epsilon", "0.1", "--budget", "5", "--samples", "3", "-q", *extra])


@pytest.mark.parametrize("which,phrase", [("bomb", "memory bomb"), ("loop", "iterates 1e+12 times")])
@pytest.mark.parametrize("sandbox", [[], ["--no-sandbox"]])
def test_attack_refuses_what_scan_refuses(tmp_path, capsys, which, phrase, sandbox):
    m = bc.constant_bomb() if which == "bomb" else bc.endless_loop(10**12)
    assert _attack(_save(tmp_path, m), *sandbox) == 2
    assert phrase in capsys.readouterr().err


def test_attack_runs_in_the_sandbox_under_its_memory_limit(tmp_path, capsys):
    """A bomb no static check can see (sized by input values): the child dies under RLIMIT_AS, the parent reports it."""
    assert _attack(_save(tmp_path, bc.runtime_bomb()), "--max-memory", "1024") == 3
    err = capsys.readouterr().err
    assert "sandbox" in err and "memory" in err


def test_attack_wall_time_limit_kills_a_data_driven_loop(tmp_path, capsys):
    assert _attack(_save(tmp_path, bc.data_driven_loop()), "--timeout", "4") == 3
    assert "time limit" in capsys.readouterr().err


@pytest.mark.parametrize("sandbox", [[], ["--no-sandbox"]])
def test_attack_per_run_watchdog(tmp_path, capsys, sandbox):
    assert _attack(_save(tmp_path, bc.data_driven_loop()), "--inference-timeout", "1", "--timeout", "60", *sandbox) == 3
    assert "inference_timeout_s" in capsys.readouterr().err


def test_attack_in_the_sandbox_gives_the_same_figures(tmp_path, capsys):
    outs = []
    for i, extra in enumerate(([], ["--no-sandbox"])):
        out = tmp_path / f"r{i}.json"
        assert main(["attack", "square", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--epsilon", "0.2", "--budget", "30",
                     "--samples", "8", "-q", "--out", str(out), *extra]) == 0
        doc = json.loads(out.read_text())
        outs.append(stable_view(doc))  # timings and peak memory aside
    assert outs[0] == outs[1] and outs[0]["status"] == "completed"


def test_attack_refuses_a_symlinked_model(tmp_path, capsys):
    link = tmp_path / "link.onnx"
    link.symlink_to(EXAMPLE_MODEL)
    assert _attack(link, "--data", str(EXAMPLE_DATA)) == 2
    assert "symbolic link" in capsys.readouterr().err


@pytest.mark.parametrize("sandbox", [[], ["--no-sandbox"]])
def test_transfer_surrogate_gets_the_static_refusals(tmp_path, capsys, sandbox):
    bomb = _save(tmp_path, bc.constant_bomb(), "bomb.onnx")
    rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(TINY_PASS), "-q", "--no-sign",
               "--transfer-from", str(bomb), *sandbox])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--transfer-from model bomb.onnx refused before running" in err and "memory bomb" in err


def test_transfer_surrogate_symlink_is_refused(tmp_path, capsys):
    link = tmp_path / "sur.onnx"
    link.symlink_to(EXAMPLE_MODEL)
    rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(TINY_PASS), "-q", "--no-sign",
               "--transfer-from", str(link)])
    assert rc == 2 and "symbolic link" in capsys.readouterr().err

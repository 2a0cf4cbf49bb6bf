"""Untrusted strings (file names, policy names, check ids) never reach the terminal raw."""

from __future__ import annotations

import shutil

import pytest

from onnxguard.cli import main

from .conftest import EXAMPLE_DATA, EXAMPLE_MODEL

EVIL = "\\u001b[2J\\u001b]0;owned\\u0007\\r\\u202e"  # TOML escapes: ESC, OSC, BEL, CR, bidi override
RAW = ("\x1b", "\x07", "\r", "\u202e")


def _policy(tmp_path):
    p = tmp_path / "evil.toml"
    p.write_text(
        f'[policy]\nname = "pol{EVIL}name"\nversion = "1{EVIL}"\ndescription = "d{EVIL}"\n'
        f'[[checks]]\nid = "sq{EVIL}id"\nattack = "square"\nnorm = "linf"\nepsilon = 0.01\nsamples = 4\nbudget = 5\n'
        "[backdoor]\nenabled = false\n"
    )
    return p


@pytest.mark.parametrize("sandbox", [[], ["--no-sandbox"]])
def test_scan_output_is_clean(tmp_path, capfd, sandbox):
    d = tmp_path / "m\x1b[31m\r\u202e"
    d.mkdir()
    model = d / "model\x1b]0;x\x07.onnx"
    shutil.copy(EXAMPLE_MODEL, model)
    out = tmp_path / "out\x1b[1m.json"
    rc = main(["scan", str(model), "--data", str(EXAMPLE_DATA), "--policy", str(_policy(tmp_path)), "--no-sign", "--out", str(out),
               "--budget", "3", *sandbox])
    assert rc in (0, 1)
    cap = capfd.readouterr()
    for ch in RAW:
        assert ch not in cap.out and ch not in cap.err, repr(ch)
    assert "sqid" in cap.out  # the check id is shown, its escape sequences stripped


def test_errors_and_policy_commands_are_clean(tmp_path, capfd):
    p = _policy(tmp_path)
    assert main(["policy", "validate", str(p)]) == 0
    assert main(["scan", str(tmp_path / "missing\x1b[31m\r\u202e.onnx"), "--policy", str(p)]) == 2
    bad = tmp_path / "bad\x1b[2J.toml"
    bad.write_text(f'[policy]\nname = "x"\nversion = "1"\n[limits]\ntimeout_s = "{EVIL}"\n')
    assert main(["policy", "validate", str(bad)]) == 2
    cap = capfd.readouterr()
    for ch in RAW:
        assert ch not in cap.out and ch not in cap.err, repr(ch)


def test_attack_and_inspect_output_is_clean(tmp_path, capfd):
    d = tmp_path / "x\x1b[31m"
    d.mkdir()
    model = d / "m\u202e.onnx"
    shutil.copy(EXAMPLE_MODEL, model)
    assert main(["inspect", str(model)]) == 0
    assert main(["attack", "square", str(model), "--data", str(EXAMPLE_DATA), "--epsilon", "0.1", "--budget", "3", "--samples", "3",
                 "--out", str(tmp_path / "r\x1b[1m.json")]) == 0
    cap = capfd.readouterr()
    for ch in RAW:
        assert ch not in cap.out and ch not in cap.err, repr(ch)


def test_a_newline_in_a_file_name_cannot_forge_an_output_line(tmp_path, capfd):
    forged = tmp_path / "x\nverdict PASS  (highest risk: low; policy standard)\nm.onnx"
    assert main(["scan", str(forged)]) == 2
    assert main(["inspect", str(forged)]) == 2
    cap = capfd.readouterr()
    assert not any(line.startswith("verdict") for line in (cap.out + cap.err).splitlines())
    assert len(cap.err.strip().splitlines()) == 2

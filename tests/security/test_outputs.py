"""Outputs: checked before the scan starts (exit 2 at once), written atomically, never through a symlink,
never over the scanned model or its data."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from onnxguard.cli import main
from onnxguard.errors import OutputError
from onnxguard.outputs import OutputDir, Protected, check_file, write_atomic

from .conftest import EXAMPLE_DATA, EXAMPLE_MODEL, TINY_PASS


@pytest.fixture()
def no_scan(monkeypatch):
    """Fails the test if a scan starts: the refusal must come before it."""
    import onnxguard.sandbox
    import onnxguard.scan

    def boom(*a, **k):
        raise AssertionError("the scan started before the output location was checked")

    monkeypatch.setattr(onnxguard.sandbox, "run_isolated", boom)
    monkeypatch.setattr(onnxguard.scan, "run_scan", boom)
    monkeypatch.setattr(onnxguard.scan, "run_attack", boom)
    monkeypatch.setattr(onnxguard.sandbox, "run_attack_isolated", boom)


@pytest.fixture()
def work(tmp_path):
    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(EXAMPLE_MODEL, model)
    data = tmp_path / "m" / "data.npz"
    shutil.copy(EXAMPLE_DATA, data)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    return model, data, victim


def _scan(model, data, *extra):
    return main(["scan", str(model), "--data", str(data), "--policy", str(TINY_PASS), "-q", "--no-sign", *extra])


@pytest.mark.parametrize("flag", ["--out", "--json", "--html"])
def test_symlink_at_the_final_component_is_refused_before_the_scan(work, tmp_path, flag, no_scan, capsys):
    model, data, victim = work
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    assert _scan(model, data, flag, str(link)) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "precious" and link.is_symlink()


@pytest.mark.parametrize("flag", ["--out", "--json", "--html"])
def test_the_model_and_its_data_are_never_overwritten(work, flag, no_scan, capsys):
    model, data, _ = work
    before = model.read_bytes(), data.read_bytes()
    for target in (model, data):
        assert _scan(model, data, flag, str(target)) == 2
        assert "input of this scan" in capsys.readouterr().err
    hard = model.parent / "hardlink.onnx"
    os.link(model, hard)  # another name for the same file
    assert _scan(model, data, flag, str(hard)) == 2
    assert (model.read_bytes(), data.read_bytes()) == before


def test_a_missing_output_folder_is_exit_2_at_once(work, tmp_path, no_scan, capsys):
    model, data, _ = work
    assert _scan(model, data, "--out", str(tmp_path / "nope" / "r.json")) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--save-adversarials", "--backdoor-out"])
def test_a_symlinked_output_folder_is_refused(work, tmp_path, flag, no_scan):
    model, data, _ = work
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere, target_is_directory=True)
    assert _scan(model, data, flag, str(tmp_path / "link")) == 2
    assert list(elsewhere.iterdir()) == []


def test_two_outputs_naming_one_file_are_refused(work, tmp_path, no_scan):
    model, data, _ = work
    assert _scan(model, data, "--out", str(tmp_path / "r.json"), "--json", str(tmp_path / "r.json")) == 2


def test_attack_outputs_are_checked_before_it_runs(work, tmp_path, no_scan):
    model, data, victim = work
    link = tmp_path / "res.json"
    link.symlink_to(victim)
    rc = main(["attack", "square", str(model), "--data", str(data), "--epsilon", "0.1", "--budget", "5", "--samples", "3", "-q", "--out", str(link)])
    assert rc == 2 and victim.read_text() == "precious"


def test_scan_writes_replace_files_atomically_and_leave_no_temporaries(work, tmp_path):
    model, data, _ = work
    out = tmp_path / "o"
    out.mkdir()
    (out / "r.json").write_text("old")
    assert _scan(model, data, "--out", str(out / "r.json"), "--json", str(out / "p.json"), "--html", str(out / "p.html"),
                 "--save-adversarials", str(out / "adv"), "--no-sandbox") in (0, 1)
    assert (out / "r.json").read_text().startswith("{")
    assert sorted(p.name for p in out.iterdir()) == ["adv", "p.html", "p.json", "r.json"]
    assert [p.name for p in (out / "adv").iterdir()] == ["square-linf.npz"]


def test_saved_adversarials_never_replace_the_data(tmp_path, no_scan):
    """The data file sits in the save folder under the name the check's adversarials would get."""
    d = tmp_path / "d"
    d.mkdir()
    data = d / "square-linf.npz"
    shutil.copy(EXAMPLE_DATA, data)
    before = data.read_bytes()
    rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(data), "--policy", str(TINY_PASS), "-q", "--no-sign", "--no-sandbox",
               "--save-adversarials", str(d)])
    assert rc == 2 and data.read_bytes() == before


def test_write_atomic_refuses_links_and_keeps_the_target_on_failure(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        write_atomic(link, "evil")
    assert victim.read_text() == "precious"
    target = tmp_path / "t.txt"
    target.write_text("old")

    def failing(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, failing)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["link", "t.txt", "victim"]
    write_atomic(target, b"new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) != "0o600"


def test_protection_is_by_inode_and_output_dirs_sanitise_names(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"x")
    prot = Protected.of([f])
    with pytest.raises(OutputError):
        check_file(tmp_path / "." / "model.onnx", "--out", prot)
    od = OutputDir(tmp_path / "out", "--save-adversarials", prot)
    p = od.write("../../evil/x.npz", lambda fh: np.save(fh, np.zeros(2)))
    assert p.parent == tmp_path / "out" and p.name == "_.._evil_x.npz".lstrip(".")


def test_report_render_never_overwrites_its_report(tmp_path, work, capsys):
    model, data, _ = work
    rep = tmp_path / "r.json"
    assert _scan(model, data, "--out", str(rep), "--no-sandbox") in (0, 1)
    before = rep.read_bytes()
    assert main(["report", "render", str(rep), "--out", str(rep)]) == 2
    assert rep.read_bytes() == before

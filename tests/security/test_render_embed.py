"""`report render` embeds only files inside the report's own folder, opened without following links."""

from __future__ import annotations

import base64
import os
import shutil

import numpy as np
import pytest

from onnxguard.cli import main
from onnxguard.png import png_bytes
from onnxguard.report import load_report

from .conftest import EXAMPLE_DATA, EXAMPLE_MODEL, TINY_PASS

MARK = bytes([7, 3, 7, 3]) * 64  # a recognisable pixel pattern


def _secret_png(path):
    img = np.frombuffer(MARK, dtype=np.uint8).reshape(16, 16)
    path.write_bytes(png_bytes(img))
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture()
def report_dir(tmp_path):
    d = tmp_path / "rep"
    d.mkdir()
    pol = tmp_path / "p.toml"
    pol.write_text(TINY_PASS.read_text().replace("epsilon = 0.001", "epsilon = 0.3").replace("budget = 20", "budget = 60"))
    rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(pol), "-q", "--no-sign", "--no-sandbox",
               "--out", str(d / "report.json"), "--save-adversarials", str(d / "adv")])
    assert rc in (0, 1)
    return d


def _with(report_path, **changes):
    r = load_report(report_path.read_text())
    for k, v in changes.items():
        setattr(r.checks[0], k, v)
    report_path.write_text(r.to_json())


def _flag_backdoor(report_path, files):
    from onnxguard.report import BackdoorSection, ClassTrigger  # noqa: F401

    r = load_report(report_path.read_text())
    r.backdoor = BackdoorSection(status="completed", flagged_classes=[3], trigger_files=files, anomaly_threshold=2.0, max_anomaly_index=5.0)
    report_path.write_text(r.to_json())


def _render(report_path, tmp_path):
    out = tmp_path / "page.html"
    assert main(["report", "render", str(report_path), "--out", str(out)]) == 0
    return out.read_text()


def test_trigger_outside_the_report_folder_is_not_embedded(report_dir, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    b64 = _secret_png(outside / "class3-secret.png")
    _flag_backdoor(report_dir / "report.json", [str(outside / "class3-secret.png"), "../secret/class3-secret.png"])
    assert b64 not in _render(report_dir / "report.json", tmp_path)
    # the positive control: the same file inside the report's folder is embedded
    shutil.copy(outside / "class3-secret.png", report_dir / "class3-secret.png")
    _flag_backdoor(report_dir / "report.json", ["class3-secret.png"])
    assert b64 in _render(report_dir / "report.json", tmp_path)


def test_a_symlink_inside_the_report_folder_is_not_followed(report_dir, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    b64 = _secret_png(outside / "x.png")
    (report_dir / "class3-link.png").symlink_to(outside / "x.png")
    sub = report_dir / "sub"
    sub.symlink_to(outside, target_is_directory=True)
    _flag_backdoor(report_dir / "report.json", ["class3-link.png", "sub/x.png", str(report_dir / "class3-link.png")])
    assert b64 not in _render(report_dir / "report.json", tmp_path)


def test_adversarials_recorded_outside_the_folder_are_not_embedded(report_dir, tmp_path):
    adv = report_dir / "adv" / "square-linf.npz"
    page = _render(report_dir / "report.json", tmp_path)
    assert "data:image/png" in page  # the scan's own adversarials, inside the folder, are shown
    moved = tmp_path / "elsewhere.npz"
    shutil.move(adv, moved)
    _with(report_dir / "report.json", adversarials=str(moved))
    page = _render(report_dir / "report.json", tmp_path)
    assert "data:image/png" not in page and "could not be found next to the report" in page
    os.symlink(moved, adv)
    _with(report_dir / "report.json", adversarials=str(adv))
    assert "data:image/png" not in _render(report_dir / "report.json", tmp_path)

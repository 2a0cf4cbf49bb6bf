"""Nothing outside the model's folder is opened, not even to refuse it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onnxguard import safeload
from onnxguard.errors import ModelLoadError
from onnxguard.scan import ScanOptions, run_scan
from tests.hostile import build_corpus as bc

from .conftest import TINY_POLICY


@pytest.fixture()
def opened(monkeypatch):
    """Every path os.open is asked to open (resolved against its dir_fd where one is given)."""
    seen: list[str] = []
    real = os.open

    def spy(path, flags, mode=0o777, *, dir_fd=None):
        p = os.fspath(path)
        if dir_fd is not None:
            p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
        seen.append(os.path.realpath(p))
        return real(path, flags, mode, dir_fd=dir_fd) if dir_fd is not None else real(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    return seen


@pytest.fixture()
def secret(tmp_path) -> Path:
    s = tmp_path / "secret" / "SECRET.txt"
    s.parent.mkdir()
    s.write_bytes(b"TOP-SECRET".ljust(48, b"#"))
    return s


def test_symlinked_model_to_a_secret_is_never_opened(tmp_path, secret, opened):
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.onnx").symlink_to(secret)
    with pytest.raises(ModelLoadError, match="symbolic link"):
        safeload.read_model(d / "model.onnx", max_bytes=1 << 20)
    with pytest.raises(ModelLoadError, match="symbolic link"):
        safeload.digest_model(d / "model.onnx", max_bytes=1 << 20)
    assert str(secret) not in opened


def test_symlink_to_dev_zero_is_never_opened(tmp_path, opened):
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.onnx").symlink_to("/dev/zero")
    with pytest.raises(ModelLoadError, match="symbolic link"):
        safeload.read_model(d / "model.onnx", max_bytes=1 << 20)
    with pytest.raises(ModelLoadError, match="not a regular file"):
        safeload.read_model(d / "model.onnx", max_bytes=1 << 20, follow_symlinks=True)
    with pytest.raises(ModelLoadError, match="not a regular file"):
        safeload.read_model(Path("/dev/zero"), max_bytes=1 << 20)
    assert "/dev/zero" not in opened


def test_hard_linked_external_data_is_refused_before_it_is_opened(tmp_path, secret, opened):
    d = tmp_path / "m"
    d.mkdir()
    os.link(secret, d / "weights.bin")
    (d / "model.onnx").write_bytes(bc.external_classifier("weights.bin").SerializeToString())
    with pytest.raises(ModelLoadError, match="hard links"):
        safeload.read_model(d / "model.onnx", max_bytes=1 << 20)
    assert str(d / "weights.bin") not in opened and str(secret) not in opened
    raw = safeload.read_model(d / "model.onnx", max_bytes=1 << 20, strict=False)  # inspect: a finding, still unopened
    assert "hard links" in raw.external_refs[0].problem
    assert str(d / "weights.bin") not in opened


def test_follow_symlinks_names_the_resolved_model_and_confines_external_data(tmp_path):
    target = tmp_path / "blobs"
    target.mkdir()
    good_w = bc._weights()[0].tobytes()
    (target / "weights.bin").write_bytes(good_w)
    (target / "model.onnx").write_bytes(bc.external_classifier("weights.bin").SerializeToString())
    snap = tmp_path / "snapshot"
    snap.mkdir()
    (snap / "model.onnx").symlink_to(target / "model.onnx")
    from onnxguard.policy import parse_policy

    policy = parse_policy(TINY_POLICY.encode(), "p.toml")
    with pytest.raises(ModelLoadError, match="--follow-symlinks"):
        run_scan(ScanOptions(model_path=snap / "model.onnx", policy=policy))
    r = run_scan(ScanOptions(model_path=snap / "model.onnx", policy=policy, follow_symlinks=True))
    assert r.model.path == str(target / "model.onnx")
    assert any("symbolic link" in n and str(target / "model.onnx") in n for n in r.notes)
    assert [f.path for f in r.model.external_data] == ["weights.bin"]
    # external data next to the link (not next to the target) is not used
    (target / "weights.bin").unlink()
    (snap / "weights.bin").write_bytes(good_w)
    with pytest.raises(ModelLoadError, match="does not exist"):
        run_scan(ScanOptions(model_path=snap / "model.onnx", policy=policy, follow_symlinks=True))


def test_a_file_swapped_after_lstat_is_not_read(tmp_path, monkeypatch):
    """The opened file must be the one lstat examined (same device and inode)."""
    d = tmp_path / "m"
    d.mkdir()
    p = d / "model.onnx"
    p.write_bytes(bc.tiny_classifier().SerializeToString())
    other = d / "other.onnx"
    other.write_bytes(bc.tiny_classifier(1).SerializeToString())
    real = safeload._open_model

    def swap(path):
        os.replace(other, p)
        return real(path)

    monkeypatch.setattr(safeload, "_open_model", swap)
    with pytest.raises(ModelLoadError, match="changed between"):
        safeload.read_model(p, max_bytes=1 << 20)

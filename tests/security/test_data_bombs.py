"""Data bombs are bad input (exit 2, naming the file), refused from their headers before anything is allocated."""

from __future__ import annotations

import numpy as np
import pytest

from onnxguard import data as D
from onnxguard.cli import main
from onnxguard.errors import DataError
from tests.hostile import build_corpus as bc

from .conftest import EXAMPLE_MODEL, TINY_PASS


@pytest.fixture()
def bombs(tmp_path):
    bc.forged_npz(tmp_path / "bomb.npz", 2 * 1024**3)
    bc.npy_declaring(tmp_path / "rows.npy", 10**12)
    with open(tmp_path / "longline.csv", "w") as f:
        f.write("a,b\n" + "1," * (9 * 1024 * 1024) + "1\n")
    (tmp_path / "bigfield.csv").write_text("a,b,c,d\n1,2,3," + "9" * (200 * 1024) + "\n")
    return tmp_path


@pytest.fixture()
def no_array_reads(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("an array was read before the headers were checked")

    monkeypatch.setattr(np, "load", boom)


@pytest.mark.parametrize("name,phrase", [
    ("bomb.npz", "expands to 2,147,483,648 bytes"),
    ("rows.npy", "(4,000,000,000,000 values)"),
    ("longline.csv", "line 2 is longer than"),
    ("bigfield.csv", "not valid csv at line 2"),
])
def test_bombs_are_refused_naming_the_file(bombs, name, phrase, no_array_reads):
    with pytest.raises(DataError) as e:
        D.load_data(bombs / name)
    assert phrase.lower() in str(e.value).lower()
    assert name in str(e.value)


@pytest.mark.parametrize("name", ["bomb.npz", "rows.npy", "longline.csv", "bigfield.csv"])
def test_cli_exit_2_before_the_sandbox_starts(bombs, name, monkeypatch, capsys):
    import onnxguard.sandbox

    def boom(*a, **k):
        raise AssertionError("the sandbox started")

    if name.endswith((".npz", ".npy")):  # CSV is checked as it is read (in the child)
        monkeypatch.setattr(onnxguard.sandbox, "run_isolated", boom)
    rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(bombs / name), "--policy", str(TINY_PASS), "-q", "--no-sign"])
    assert rc == 2
    assert name in capsys.readouterr().err


def test_npz_member_header_larger_than_its_bytes(tmp_path):
    """A member whose .npy header declares more data than the member holds (truncated or forged)."""
    import io
    import zipfile

    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 100)})
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        z.writestr("x.npy", hdr.getvalue() + b"\0" * 1024)
    with pytest.raises(DataError, match="declares 800,000,000 bytes"):
        D.load_data(tmp_path / "lie.npz")


def test_honest_data_still_loads(tmp_path):
    x = np.random.default_rng(0).uniform(size=(5, 4)).astype(np.float32)
    np.savez_compressed(tmp_path / "ok.npz", x=x, y=np.arange(5))
    np.save(tmp_path / "ok.npy", x)
    (tmp_path / "ok.csv").write_text("a,b,c,d,label\n" + "\n".join(",".join(map(str, r)) + f",{i}" for i, r in enumerate(x)) + "\n")
    for name in ("ok.npz", "ok.npy", "ok.csv"):
        s = D.load_data(tmp_path / name)
        assert s.x.shape == (5, 4) and np.allclose(s.x, x, atol=1e-6)

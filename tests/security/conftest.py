"""Shared helpers for the security tests: tiny models and policies the tests build themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_DATA, EXAMPLE_MODEL  # noqa: F401
from tests.hostile import build_corpus as bc

ROOT = Path(__file__).resolve().parents[2]
TINY_PASS = ROOT / "tests" / "data" / "policies" / "tiny-pass.toml"

TINY_POLICY = (
    '[policy]\nname = "security-tests"\nversion = "1"\n[[checks]]\nid = "square-linf"\nattack = "square"\nnorm = "linf"\n'
    'epsilon = 0.1\nsamples = 3\nbudget = 10\n[backdoor]\nenabled = false\n[limits]\nmax_memory_mb = 1024\ntimeout_s = 30\n'
)


@pytest.fixture()
def tiny(tmp_path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    p = d / "tiny.onnx"
    p.write_bytes(bc.tiny_classifier().SerializeToString())
    return p


@pytest.fixture()
def tiny_policy(tmp_path) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(TINY_POLICY)
    return p

"""The sandbox child gets a minimal, allow-listed environment: never the signing key, tokens or credentials."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from onnxguard.policy import load_policy
from onnxguard.sandbox import _child_env, run_isolated
from onnxguard.scan import ScanOptions

SECRETS = {
    "ONNXGUARD_SIGNING_KEY": "/home/me/.config/onnxguard/signing-key.pem",
    "ONNXGUARD_PASSPHRASE": "hunter2-passphrase",
    "MY_KEY_PASSPHRASE": "another-passphrase",
    "MLFLOW_TRACKING_TOKEN": "mlflow-token-123",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-password-123",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-123",
    "AWS_SESSION_TOKEN": "aws-session-123",
    "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/gcp.json",
    "AZURE_CLIENT_SECRET": "azure-secret-123",
    "GITHUB_TOKEN": "ghp_example",
    "HF_TOKEN": "hf_example",
    "ONNXGUARD_DEBUG": "1",
}


def test_child_env_is_an_allow_list(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    env = _child_env(2)
    assert not set(SECRETS) & set(env)
    assert not any(v in " ".join(env.values()) for v in SECRETS.values() if len(v) > 3)
    assert env["PATH"] == os.environ["PATH"] and env["OMP_NUM_THREADS"] == "1" and env["ONNXGUARD_ORT_THREADS"] == "2"
    assert env["HOME"] != os.environ.get("HOME")  # the user's dotfiles are not the model's business


def test_the_running_child_sees_none_of_the_secrets(monkeypatch, tmp_path, tiny, tiny_policy):
    """The real child process: a stand-in interpreter dumps the environment it was given."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    dump = tmp_path / "child-env.txt"
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\nenv > '{dump}'\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    res = run_isolated(ScanOptions(model_path=tiny, policy=load_policy(str(tiny_policy))), python=str(fake))
    assert res.crashed  # the stand-in returns no report
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert "PATH" in seen and "ONNXGUARD_SANDBOX_FD" in seen
    leaked = {k for k in SECRETS if k in seen} | {k for k, v in seen.items() if len(v) > 3 and v in SECRETS.values()}
    assert not leaked, leaked
    assert seen.get("HOME") != os.environ.get("HOME")


def test_a_real_sandboxed_scan_still_works_with_the_minimal_env(monkeypatch, tiny, tiny_policy):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    r = run_isolated(ScanOptions(model_path=tiny, policy=load_policy(str(tiny_policy)))).report
    assert r.summary is not None and r.checks[0].status == "completed"
    assert Path(r.model.path) == tiny

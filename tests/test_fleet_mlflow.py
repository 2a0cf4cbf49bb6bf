"""models:/ targets: a fleet over the versions of a model in an MLflow registry (sqlite store, no server)."""

from __future__ import annotations

import json

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed; models:/ targets need it")

from onnxguard.cli import main  # noqa: E402
from onnxguard.fleet.mlflow_source import parse_target  # noqa: E402
from onnxguard.errors import BadInputError  # noqa: E402
from tests.fleet_helpers import POLICIES, keypair, make_fleet  # noqa: E402


def test_parse_target():
    assert parse_target("models:/digits") == ("digits", None, None)
    assert parse_target("models:/digits/3") == ("digits", "3", None)
    assert parse_target("models:/digits@prod") == ("digits", None, "prod")
    for bad in ("models:/x'or'1", "models:/digits/latest", "models:/"):
        with pytest.raises(BadInputError):
            parse_target(bad)


def test_fleet_over_registry_versions(tmp_path, digits_params, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    models = make_fleet(tmp_path / "m", digits_params[0], n=2)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model("digits")
    for m in models:
        run = client.create_run(exp)
        client.log_artifact(run.info.run_id, str(m), artifact_path="model")
        client.create_model_version("digits", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    priv, pub = keypair(tmp_path)
    out = tmp_path / "out"
    args = ["fleet", "scan", "models:/digits", "--tracking-uri", uri, "--out", str(out), "--policy", str(POLICIES / "tiny-pass.toml"), "--key", str(priv), "-q"]
    assert main(args) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["digits/1", "digits/2"] and {r["status"] for r in rows} == {"scanned"}
    assert main(args) == 0  # the rerun reuses both (the downloads are cached, the reports re-verified)
    assert {r["status"] for r in json.loads((out / "summary.json").read_text())["rows"]} == {"reused"}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["fleet", "scan", "models:/nope", "--tracking-uri", uri, "--out", str(out), "--key", str(priv), "-q"]) == 2

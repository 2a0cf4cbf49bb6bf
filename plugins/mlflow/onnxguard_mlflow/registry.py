"""Everything the plugin asks of MLflow, in one place.

Only these calls touch the registry. None of them creates a model version or
sets an alias, the two events the receiver acts on, so tags and alias
removals written here cannot start a loop (the receiver ignores tag events).
"""

from __future__ import annotations

import re
from pathlib import Path

TAG_PREFIX = "onnxguard."
POLICY_TAG = "onnxguard.policy"  # on the registered model: which policy its versions are scanned under
TAG_STATUS = "onnxguard.status"  # scanning | done | failed | no_onnx
TAG_VERDICT = "onnxguard.verdict"
TAG_RISK = "onnxguard.highest_risk"
TAG_POLICY = "onnxguard.policy"
TAG_POLICY_SHA = "onnxguard.policy_sha256"
TAG_REPORT_SHA = "onnxguard.report_sha256"
TAG_REPORT_URI = "onnxguard.report_uri"
TAG_SIGNED = "onnxguard.signed"
TAG_ERROR = "onnxguard.error"
TAG_ATTEMPTS = "onnxguard.attempts"
REPORT_DIR = "onnxguard"
INDEX_FILE = "index.json"

_MODEL_URI = re.compile(r"^models:/([^/]+)/(\d+)$")


def admission_tag(alias: str) -> str:
    return f"onnxguard.admission.{alias}"


def parse_model_uri(uri: str) -> tuple[str, str]:
    m = _MODEL_URI.match(uri)
    if not m:
        raise ValueError(f"expected models:/NAME/VERSION, got {uri!r}")
    return m.group(1), m.group(2)


class Registry:
    def __init__(self, tracking_uri: str, experiment: str = "onnxguard-scans") -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.experiment = experiment

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(name, version).tags)

    def model_policy(self, name: str) -> str | None:
        return self.client.get_registered_model(name).tags.get(POLICY_TAG)

    def alias_version(self, name: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except Exception:
            return None

    def download(self, name: str, version: str, dst: Path) -> Path:
        from mlflow.artifacts import download_artifacts

        dst.mkdir(parents=True, exist_ok=True)
        # resolve through this client: a bare models:/ URI would go to the process-wide registry URI
        uri = self.client.get_model_version_download_uri(name, version)
        return Path(download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri))

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, v)

    def delete_tag(self, name: str, version: str, key: str) -> None:
        try:
            self.client.delete_model_version_tag(name, version, key)
        except Exception:
            pass

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def store_reports(self, name: str, version: str, files: dict[str, bytes], work: Path) -> str:
        """Log the reports as artifacts of a run in the plugin's experiment; returns their ``runs:/`` URI."""
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(exp_id, run_name=f"onnxguard {name} v{version}", tags={
            "onnxguard.model": name, "onnxguard.version": str(version), "mlflow.source.name": "onnxguard-mlflow",
        })
        out = work / "upload" / REPORT_DIR
        out.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            (out / fname).write_bytes(data)
        try:
            self.client.log_artifacts(run.info.run_id, str(out), artifact_path=REPORT_DIR)
        except Exception:
            self.client.set_terminated(run.info.run_id, status="FAILED")
            raise
        self.client.set_terminated(run.info.run_id, status="FINISHED")
        return f"runs:/{run.info.run_id}/{REPORT_DIR}"

    def fetch(self, uri: str, dst: Path) -> Path:
        from mlflow.artifacts import download_artifacts

        dst.mkdir(parents=True, exist_ok=True)
        return Path(download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri))

    def ensure_webhook(self, url: str, secret: str, name: str = "onnxguard") -> str:
        """Create the webhook, or point the existing one of that name at ``url`` with ``secret``."""
        events = ["model_version.created", "model_version_alias.created"]
        for wh in self.client.list_webhooks():
            if wh.name == name:
                self.client.update_webhook(wh.webhook_id, url=url, events=events, secret=secret, status="ACTIVE")
                return wh.webhook_id
        return self.client.create_webhook(name=name, url=url, events=events, secret=secret,
                                          description="onnxguard admission scans").webhook_id

"""MLflow as an admission-kit ``Registry``: everything the plugin asks of MLflow, in one place.

Only these calls touch MLflow. None of them creates a model version or sets an alias, the two
events the receiver acts on, so tags and alias removals written here cannot start a loop (the
receiver ignores tag events).

Where MLflow's loader looks: ``mlflow.onnx.load_model`` opens the file the ``MLmodel`` file's
``onnx`` flavour names in ``data``, wherever it is and whatever it is called; ``mlflow.pyfunc``
imports the ``loader_module`` the ``python_function`` flavour names. So the gate reads that file
(``yaml.safe_load``) and refuses anything it cannot vouch for: no ``MLmodel``, no onnx flavour, a
path outside the artifact, a ``code`` folder put on ``sys.path``, a pyfunc loader other than
``mlflow.onnx``, or other flavours (their loaders open other files, pickles among them).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

from onnxguard.admission.artifact import safe_relpath, show
from onnxguard.admission.registry import (  # noqa: F401  (re-exported for the plugin's users)
    ATTESTATION_FILE, MAX_ATTESTATION_CANDIDATES, POLICY_TAG, TAG_ERROR, TAG_POLICY, TAG_REPORT_SHA, TAG_REPORT_URI,
    TAG_RISK, TAG_SIGNED, TAG_STATUS, TAG_VERDICT, RegistryError, admission_tag,
)
from onnxguard.errors import AdmissionDenied

REPORT_DIR = "onnxguard"
SUBJECT_TAG = "onnxguard.subject"  # on the plugin's runs: which version they attest (a digest: safe in a filter)
MAX_MLMODEL_BYTES = 1 << 20
ALLOWED_FLAVOURS = {"onnx", "python_function"}

_MODEL_URI = re.compile(r"^models:/([^/]+)/(\d+)$")


def parse_model_uri(uri: str) -> tuple[str, str]:
    m = _MODEL_URI.match(uri)
    if not m:
        raise ValueError(f"expected models:/NAME/VERSION, got {uri!r}")
    return m.group(1), m.group(2)


def subject_key(name: str, version: str) -> str:
    return hashlib.sha256(f"mlflow\0{name}\0{version}".encode("utf-8")).hexdigest()


def mlmodel_paths(root: Path) -> list[str]:
    """The file(s) MLflow would load as this ONNX model, from ``root/MLmodel``; ``AdmissionDenied`` otherwise."""
    import yaml

    p = root / "MLmodel"
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise AdmissionDenied("the artifact has no MLmodel file: what MLflow would load cannot be told, so nothing is admitted") from None
    if not stat.S_ISREG(st.st_mode):
        raise AdmissionDenied("MLmodel is not a regular file (a symbolic link?)")
    if st.st_size > MAX_MLMODEL_BYTES:
        raise AdmissionDenied(f"MLmodel is {st.st_size} bytes, over the {MAX_MLMODEL_BYTES}-byte limit")
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        text = f.read(MAX_MLMODEL_BYTES + 1)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AdmissionDenied(f"MLmodel is not valid YAML: {show(str(exc).splitlines()[0] if str(exc) else '')}") from None
    flavours = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavours, dict):
        raise AdmissionDenied("MLmodel declares no flavours")
    onnx_f = flavours.get("onnx")
    if not isinstance(onnx_f, dict):
        raise AdmissionDenied("MLmodel has no onnx flavour: MLflow would not load this version as an ONNX model")
    others = sorted(str(k) for k in flavours if k not in ALLOWED_FLAVOURS)
    if others:
        raise AdmissionDenied(f"MLmodel also declares the flavour(s) {', '.join(map(show, others))}, whose loaders open files the gate does not scan")
    data = onnx_f.get("data")
    if not isinstance(data, str):
        raise AdmissionDenied("the onnx flavour in MLmodel names no model file ('data')")
    paths = [safe_relpath(data, "onnx flavour's model path")]
    if onnx_f.get("code"):
        raise AdmissionDenied("the onnx flavour puts a code folder on sys.path ('code'): refused")
    py = flavours.get("python_function")
    if py is not None:
        if not isinstance(py, dict) or py.get("loader_module") != "mlflow.onnx":
            raise AdmissionDenied(f"the python_function flavour loads {show(py.get('loader_module') if isinstance(py, dict) else py)}, not mlflow.onnx")
        if py.get("code"):
            raise AdmissionDenied("the python_function flavour puts a code folder on sys.path ('code'): refused")
        if py.get("data") is not None:
            if not isinstance(py.get("data"), str):
                raise AdmissionDenied("the python_function flavour's 'data' is not a path")
            paths.append(safe_relpath(py["data"], "python_function flavour's model path"))
    return list(dict.fromkeys(paths))


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower())


class Registry:
    """The MLflow model registry (and its artifact store), as the admission gate sees it."""

    kind = "mlflow"

    def __init__(self, tracking_uri: str, experiment: str = "onnxguard-scans") -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.experiment = experiment

    def artifact_identity(self, name: str, version: str) -> str:
        mv = self.client.get_model_version(name, version)
        return f"source={mv.source} run_id={mv.run_id or ''}"

    def model_policy(self, name: str) -> str | None:
        return self.client.get_registered_model(name).tags.get(POLICY_TAG)

    def alias_version(self, name: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except Exception as exc:  # noqa: BLE001 - only "not found" means "not set"
            if _not_found(exc):
                return None
            raise RegistryError(f"cannot read alias {show(alias)} of {show(name)}: {type(exc).__name__}: {show(exc, 300)}") from None

    def download(self, name: str, version: str, dst: Path) -> Path:
        from mlflow.artifacts import download_artifacts

        dst.mkdir(parents=True, exist_ok=True)
        # resolve through this client: a bare models:/ URI would go to the process-wide registry URI
        uri = self.client.get_model_version_download_uri(name, version)
        return Path(download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri))

    def loadable_paths(self, root: Path) -> list[str]:
        return mlmodel_paths(root)

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, v)

    def delete_tag(self, name: str, version: str, key: str) -> None:
        try:
            self.client.delete_model_version_tag(name, version, key)
        except Exception:  # noqa: BLE001 - a tag that is not there is fine
            pass

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def _experiment_id(self, create: bool) -> str | None:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        return self.client.create_experiment(self.experiment) if create else None

    def store_artifacts(self, name: str, version: str, files: dict[str, bytes], work: Path) -> str:
        """Log the files as artifacts of a new run in the plugin's experiment; returns their ``runs:/`` URI."""
        run = self.client.create_run(self._experiment_id(create=True), run_name=f"onnxguard {name} v{version}", tags={
            "onnxguard.model": name, "onnxguard.version": str(version), SUBJECT_TAG: subject_key(name, version),
            "mlflow.source.name": "onnxguard-mlflow",
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

    def load_attestations(self, name: str, version: str, max_bytes: int) -> list[bytes | None]:
        """The attestations of the newest runs in the plugin's experiment that say they attest this version.

        Anyone who can write to MLflow can create such a run: what is found here is trusted only
        once its signature and content verify. Sizes are checked from the listing before a download."""
        from mlflow.artifacts import download_artifacts

        exp_id = self._experiment_id(create=False)
        if exp_id is None:
            return []
        runs = self.client.search_runs([exp_id], filter_string=f"tags.`{SUBJECT_TAG}` = '{subject_key(name, version)}'",
                                       order_by=["attributes.start_time DESC"], max_results=MAX_ATTESTATION_CANDIDATES)
        out: list[bytes | None] = []
        for run in runs:
            want = f"{REPORT_DIR}/{ATTESTATION_FILE}"
            info = next((f for f in self.client.list_artifacts(run.info.run_id, REPORT_DIR) if f.path == want and not f.is_dir), None)
            if info is None:
                continue
            if info.file_size is None or info.file_size > max_bytes:
                out.append(None)  # too large: not read
                continue
            with tempfile.TemporaryDirectory(prefix="onnxguard-att-") as tmp:
                p = Path(download_artifacts(run_id=run.info.run_id, artifact_path=want, dst_path=tmp, tracking_uri=self.tracking_uri))
                with open(p, "rb") as f:
                    data = f.read(max_bytes + 1)
            out.append(data)
        return out

    def ensure_webhook(self, url: str, secret: str, name: str = "onnxguard") -> str:
        """Create the webhook, or point the existing one of that name at ``url`` with ``secret``."""
        events = ["model_version.created", "model_version_alias.created"]
        for wh in self.client.list_webhooks():
            if wh.name == name:
                self.client.update_webhook(wh.webhook_id, url=url, events=events, secret=secret, status="ACTIVE")
                return wh.webhook_id
        return self.client.create_webhook(name=name, url=url, events=events, secret=secret,
                                          description="onnxguard admission scans").webhook_id

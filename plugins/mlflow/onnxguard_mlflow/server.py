"""MLflow's webhooks into the admission kit's receiver: which events make which jobs, and MLflow's HMAC scheme."""

from __future__ import annotations

from typing import Any, Mapping

from onnxguard.admission.queue import NewJob
from onnxguard.admission.server import Receiver as _Receiver
from onnxguard.admission.worker import ALIAS, SCAN, Worker

from . import webhook
from .config import Settings


def jobs_for(event: dict[str, Any], settings: Settings) -> list[NewJob]:
    """The jobs an event asks for: only version creation and protected-alias creation do anything."""
    if not isinstance(event, dict):
        return []
    entity, action, data = event.get("entity"), event.get("action"), event.get("data") or {}
    if not isinstance(data, dict):
        return []
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, (str, int)) or isinstance(version, bool):
        return []
    version = str(version)
    if (entity, action) == ("model_version", "created"):
        return [NewJob(SCAN, f"scan:{name}:{version}", {"name": name, "version": version})]
    if (entity, action) == ("model_version_alias", "created"):
        alias = data.get("alias")
        if isinstance(alias, str) and alias in settings.protected_aliases:
            return [NewJob(ALIAS, f"alias:{name}:{alias}:{version}", {"name": name, "alias": alias, "version": version})]
    return []


class MlflowIntake:
    """MLflow's webhook deliveries: ``X-MLflow-Signature`` HMAC over ``delivery_id.timestamp.body``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def precheck(self, headers: Mapping[str, str]) -> None:
        webhook.precheck(headers)

    def authenticate(self, headers: Mapping[str, str], body: bytes, now: float) -> str:
        return webhook.verify(self.settings.secret or "", headers, body, now=now, tolerance_s=self.settings.tolerance_s).delivery_id

    def jobs(self, event: Any) -> list[NewJob]:
        return jobs_for(event, self.settings)


class Receiver(_Receiver):
    """The admission kit's receiver, taking MLflow's webhooks."""

    def __init__(self, settings: Settings, worker: Worker, host: str = "127.0.0.1", port: int = 8765) -> None:
        super().__init__(settings, worker, MlflowIntake(settings), host=host, port=port)

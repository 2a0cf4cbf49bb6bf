"""Receiver settings: the admission kit's, plus where the MLflow server is."""

from __future__ import annotations

from dataclasses import dataclass

from onnxguard.admission.config import Settings as _Settings
from onnxguard.admission.config import admission_policies, resolve_policy

__all__ = ["Settings", "admission_policies", "resolve_policy"]


@dataclass
class Settings(_Settings):
    tracking_uri: str = ""
    experiment: str = "onnxguard-scans"

"""The admission kit: a gate that lets a model version hold a protected alias only on the strength
of what onnxguard itself signed, for exactly the files the registry will load.

Generic parts, for any registry: the durable job queue (``queue``), the worker (``worker``), the
scan hook (``engine.Scanner``), the attestation and its verification (``attestation``), the
artifact walk (``artifact``), settings (``config``), the webhook receiver (``server``), and the
``Registry`` protocol (``registry``) that a plug-in implements (``plugins/mlflow`` for MLflow).
This package never imports a registry's client library.
"""

from .registry import Registry, RegistryError

__all__ = ["Registry", "RegistryError"]

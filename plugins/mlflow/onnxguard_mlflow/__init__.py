"""onnxguard admission control for the MLflow model registry."""

__version__ = "0.1.0"

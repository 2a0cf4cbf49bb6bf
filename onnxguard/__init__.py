"""onnxguard: a security scanner for ONNX classifiers."""

__version__ = "0.1.0"

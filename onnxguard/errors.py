"""Typed exceptions. Library code raises these with a user-facing message;
``onnxguard.cli`` is the one place that turns them into exit codes.

Exit codes (documented in the README):
    0  admitted / ok
    1  rejected by policy (verdict ``fail``, or ``warn`` with ``--fail-on warn``),
       or a report that does not verify
    2  bad input or usage (malformed model, wrong data, broken policy, ...)
    3  scan failed (the model crashed or timed out in the sandbox, internal error)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_SCAN_FAILED = 3


class OnnxGuardError(Exception):
    """Base class: ``str(err)`` is a message fit for the user."""

    exit_code: int = EXIT_SCAN_FAILED


class BadInputError(OnnxGuardError):
    exit_code = EXIT_BAD_INPUT


class ModelLoadError(BadInputError):
    """The file is not a loadable ONNX model (malformed, hostile, too large)."""


class NotAClassifierError(BadInputError):
    """The model loads but is not a classifier the scanner can attack."""


class CannotRunError(ModelLoadError):
    """A valid model that onnxruntime will not run here (custom operator domains): it gets a static-only report."""


class DataError(BadInputError):
    """Sample data is missing, malformed, or does not fit the model."""


class OutputError(BadInputError):
    """An output location cannot be written safely (missing folder, a symlink, the scanned model itself)."""


class PolicyError(BadInputError):
    """A policy file is missing or invalid."""


class KeyFileError(BadInputError):
    """A signing or verification key cannot be read."""


class BudgetExhausted(OnnxGuardError):
    """An attack asked the oracle for more queries than its budget allows.

    Attacks plan within their budget; reaching this is a bug in the attack,
    which is why it is an error and not a silent truncation."""


class TimeBudgetExhausted(OnnxGuardError):
    """A check's time budget ran out while an attack was querying (the oracle refuses further queries);
    the check drops the samples in flight and reports the ones that finished."""


class ScanFailed(OnnxGuardError):
    exit_code = EXIT_SCAN_FAILED


class ResourceLimitError(ScanFailed):
    """The model exhausted a resource limit (memory, CPU or wall time) while loading or running."""


class InferenceTimeout(ResourceLimitError):
    """One onnxruntime run took longer than the policy's ``limits.inference_timeout_s`` and was stopped."""


class VerificationError(OnnxGuardError):
    """A signed report failed one of the verification checks."""

    exit_code = EXIT_REJECTED

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.detail = message


class SigningError(BadInputError):
    """A report could not be signed (it does not serialise canonically, or not as a valid report)."""


class AdmissionDenied(OnnxGuardError):
    """The admission gate refuses a model version; ``str(err)`` says why."""

    exit_code = EXIT_REJECTED

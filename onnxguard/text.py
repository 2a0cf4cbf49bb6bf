"""Making untrusted text (model metadata, error messages) safe to print."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def as_str(value: str | bytes) -> str:
    """Protobuf string fields holding invalid UTF-8 come back as bytes: decode them, replacing errors."""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def has_control(text: str) -> bool:
    """True when ``text`` holds terminal escapes, control or bidi-override characters."""
    return bool(_ANSI.search(text) or _CONTROL.search(text))


def sanitize(text: str, limit: int | None = None) -> str:
    """Strip ANSI/terminal escapes and control characters (keeps newlines and tabs)."""
    out = _CONTROL.sub("", _ANSI.sub("", text))
    if limit is not None and len(out) > limit:
        out = out[:limit] + "…"
    return out

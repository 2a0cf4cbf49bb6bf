"""Verifying MLflow webhook deliveries.

MLflow (3.3+, ``mlflow/webhooks/delivery.py``) sends three headers and signs
``f"{delivery_id}.{timestamp}.{payload}"`` with HMAC-SHA256 under the webhook's
secret, where ``payload`` is exactly the request body; the signature header is
``v1,<base64 digest>`` (Standard Webhooks style, so a space-separated list of
signatures is accepted too). Verification works on the raw body bytes, never
on re-serialised JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Mapping

from onnxguard.admission.server import Rejected

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
MAX_DELIVERY_ID = 200


WebhookRejected = Rejected  # a delivery that must not be processed; ``status`` is the HTTP answer


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    timestamp: int


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The header value MLflow sends for this delivery (used by tests and tools)."""
    mac = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{timestamp}.".encode("utf-8") + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac.digest()).decode('ascii')}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # plain dicts in tests: look the name up case-insensitively
        low = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == low), None)
    return value


def precheck(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """The headers a delivery needs, well-formed; ``WebhookRejected`` (401) before any byte of the body is read."""
    delivery_id = _header(headers, DELIVERY_ID_HEADER)
    ts_text = _header(headers, TIMESTAMP_HEADER)
    sig = _header(headers, SIGNATURE_HEADER)
    if not delivery_id or not ts_text or not sig:
        raise WebhookRejected(401, "missing signature, timestamp or delivery id header")
    if len(delivery_id) > MAX_DELIVERY_ID or not delivery_id.isascii() or not delivery_id.isprintable():
        raise WebhookRejected(401, "malformed delivery id")
    if len(sig) > 4096:
        raise WebhookRejected(401, "malformed signature header")
    try:
        int(ts_text)
    except ValueError:
        raise WebhookRejected(401, "malformed timestamp") from None
    return delivery_id, ts_text, sig


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance_s: float) -> Delivery:
    """Check signature and freshness on the raw body; raise ``WebhookRejected`` (401) on any failure.

    Replay of a fresh, valid delivery id is caught by the queue, which records
    ids atomically with the jobs they create."""
    delivery_id, ts_text, sig = precheck(headers)
    ts = int(ts_text)
    expected = sign(secret, delivery_id, ts_text, body).encode("ascii")
    ok = False
    for candidate in sig.split():
        ok |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected)
    if not ok:
        raise WebhookRejected(401, "signature does not match")
    if abs(now - ts) > tolerance_s:  # checked after the signature, so the timestamp is authentic
        raise WebhookRejected(401, f"stale timestamp: {int(now - ts)}s from now (tolerance {int(tolerance_s)}s)")
    return Delivery(delivery_id, ts)

"""Verifying offpeak's webhook deliveries, as the Standard Webhooks specification says.

Each delivery carries three headers:

* ``webhook-id``: the event's id (``msg_...``), the same on every attempt: deduplicate on it;
* ``webhook-timestamp``: Unix seconds of the attempt;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"``, keyed with
  the base64-decoded part of the endpoint's ``whsec_...`` secret; several space-separated
  signatures while a rotated secret still signs.

The body must be the exact bytes received: re-serialised JSON does not verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import WebhookVerificationError

__all__ = ["DEFAULT_TOLERANCE", "sign_webhook", "verify_webhook"]

DEFAULT_TOLERANCE = 5 * 60
"""Seconds a ``webhook-timestamp`` may be away from now (either way) before a delivery is refused."""

_SECRET_PREFIX = "whsec_"


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise WebhookVerificationError("the webhook secret is not whsec_ followed by base64") from error
    if not key:
        raise WebhookVerificationError("the webhook secret is empty")
    return key


def _body_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | Any) -> dict[str, str]:
    """The headers by lower-cased name (the first of repeated ones), from a dict, any mapping
    (``httpx.Headers``, Starlette's, Django's ``request.headers``), an
    ``email.message.Message`` (``http.server``'s ``self.headers``) or (name, value) pairs."""
    items = headers.items() if hasattr(headers, "items") else headers
    out: dict[str, str] = {}
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out.setdefault(str(name).lower(), str(value))
    return out


def sign_webhook(secret: str | bytes, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) offpeak sends for this delivery.

    Handy to test a receiver; offpeak's own deliveries are signed by the server.
    """
    signed = f"{msg_id}.{timestamp}.".encode() + _body_bytes(body)
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_webhook(
    secret: str | bytes,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | Any,
    body: bytes | bytearray | memoryview | str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Any:
    """Check a delivery and return its parsed JSON payload (``{"type", "timestamp", "data"}``).

    Args:
        secret: the endpoint's secret, ``whsec_<base64>`` (from ``webhooks.create`` or
            ``webhooks.rotate_secret``), or the raw key bytes.
        headers: the request's headers, in any case: a dict, any mapping or an
            ``email.message.Message``.
        body: the raw request body, exactly as received.
        tolerance: seconds the ``webhook-timestamp`` may be from ``now`` (5 minutes).
        now: the current Unix time (tests); ``time.time()`` by default.

    Raises:
        WebhookVerificationError: a header is missing or malformed, the timestamp is
            outside the tolerance (a replay), or no ``v1`` signature matches.
    """
    found = _lower_headers(headers)
    msg_id = found.get("webhook-id")
    timestamp = found.get("webhook-timestamp")
    signatures = found.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        missing = [
            name
            for name, value in (
                ("webhook-id", msg_id),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", signatures),
            )
            if not value
        ]
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    try:
        sent_at = int(timestamp.strip())
    except ValueError as error:
        raise WebhookVerificationError("webhook-timestamp is not Unix seconds") from error
    current = time.time() if now is None else now
    if sent_at < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if sent_at > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far in the future")

    raw = _body_bytes(body)
    expected = sign_webhook(secret, msg_id, timestamp, raw)[len("v1,") :].encode("ascii")
    matched = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1" or not value:
            continue
        # compare_digest over every candidate: no early exit on the first match.
        matched |= hmac.compare_digest(value.encode("ascii", "replace"), expected)
    if not matched:
        raise WebhookVerificationError("no matching signature")
    try:
        return json.loads(raw)
    except ValueError as error:
        raise WebhookVerificationError("the payload is not JSON") from error

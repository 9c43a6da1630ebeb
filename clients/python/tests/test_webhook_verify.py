"""verify_webhook on its own (Standard Webhooks), with deliveries signed here."""

from __future__ import annotations

import base64
import email.message
import json
import os
import time

import httpx
import pytest

from offpeak_client import WebhookVerificationError, sign_webhook, verify_webhook

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
OTHER = "whsec_" + base64.b64encode(os.urandom(32)).decode()
BODY = json.dumps({"type": "group.completed", "timestamp": "2026-12-04T20:00:00Z", "data": {"id": "g"}}).encode()


def headers(secret=SECRET, body=BODY, ts=None, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"):
    ts = int(time.time()) if ts is None else ts
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_webhook(secret, msg_id, ts, body),
    }


def test_a_good_delivery_verifies_and_parses():
    event = verify_webhook(SECRET, headers(), BODY)
    assert event["type"] == "group.completed" and event["data"] == {"id": "g"}


def test_matches_the_specifications_example():
    # The example of the Standard Webhooks specification (and its reference libraries).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    ts = 1614265330
    body = b'{"test": 2432232314}'
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign_webhook(secret, msg_id, ts, body) == signature
    h = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
    assert verify_webhook(secret, h, body, now=ts + 10) == {"test": 2432232314}


@pytest.mark.parametrize(
    "make",
    [
        lambda h: dict(h),
        lambda h: {k.title(): v for k, v in h.items()},  # Webhook-Id, ...
        lambda h: {k.upper(): v for k, v in h.items()},
        lambda h: httpx.Headers(h),
        lambda h: list(h.items()),
    ],
    ids=["dict", "title-case", "upper-case", "httpx.Headers", "pairs"],
)
def test_headers_in_any_case_and_shape(make):
    verify_webhook(SECRET, make(headers()), BODY)


def test_email_message_headers_of_http_server():
    message = email.message.Message()
    for name, value in headers().items():
        message[name.title()] = value
    verify_webhook(SECRET, message, BODY)


def test_body_as_str_and_secret_as_raw_bytes():
    verify_webhook(base64.b64decode(SECRET.removeprefix("whsec_")), headers(), BODY.decode())
    verify_webhook(SECRET.removeprefix("whsec_"), headers(), BODY)  # without the prefix


def test_several_signatures_while_a_rotated_secret_still_signs():
    h = headers(OTHER)
    h["webhook-signature"] = (
        "v1a,xyz " + headers(OTHER)["webhook-signature"] + " " + headers(SECRET)["webhook-signature"]
    )
    verify_webhook(SECRET, h, BODY)
    verify_webhook(OTHER, h, BODY)


def test_a_tampered_body_is_refused():
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(SECRET, headers(), BODY.replace(b'"g"', b'"h"'))


def test_a_wrong_secret_is_refused():
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(OTHER, headers(), BODY)


def test_a_stale_or_future_timestamp_is_refused():
    now = int(time.time())
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(SECRET, headers(ts=now - 301), BODY)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_webhook(SECRET, headers(ts=now + 301), BODY)
    verify_webhook(SECRET, headers(ts=now - 290), BODY)
    verify_webhook(SECRET, headers(ts=now - 3600), BODY, tolerance=7200)


def test_a_changed_id_or_timestamp_breaks_the_signature():
    h = headers()
    h["webhook-id"] = "msg_other"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, h, BODY)
    h = headers()
    h["webhook-timestamp"] = str(int(h["webhook-timestamp"]) - 1)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, h, BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_refused(missing):
    h = headers()
    del h[missing]
    with pytest.raises(WebhookVerificationError, match=missing):
        verify_webhook(SECRET, h, BODY)


def test_malformed_values_are_refused():
    h = headers()
    h["webhook-timestamp"] = "yesterday"
    with pytest.raises(WebhookVerificationError, match="Unix seconds"):
        verify_webhook(SECRET, h, BODY)
    with pytest.raises(WebhookVerificationError, match="secret"):
        verify_webhook("whsec_not base64!", headers(), BODY)
    h = headers()
    h["webhook-signature"] = "v1," + "A" * 44
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, h, BODY)
    h["webhook-signature"] = "v2," + headers()["webhook-signature"][3:]  # another scheme: ignored
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, h, BODY)

"""Typed errors of the offpeak client.

Every error answer of the API is JSON, ``{"error": {"code", "message", "field"?, "details"?}}``,
with a fitting status. The client raises it as an :class:`OffpeakError` (or the subclass
for its status), carrying those fields and the ``Retry-After`` of a 429 or 503.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from typing import Any

import httpx

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "NotFoundError",
    "OffpeakError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "TruncatedStreamError",
    "UnprocessableEntityError",
    "WebhookVerificationError",
    "error_from_response",
    "parse_retry_after",
]


class OffpeakError(Exception):
    """An error answer of the offpeak API.

    Attributes:
        status: the HTTP status (400, 401, 404, 409, 413, 422, 429, 5xx, ...).
        code: the stable machine-readable code, e.g. ``idempotency_conflict``,
            ``quota_exceeded``, ``not_found``; ``http_<status>`` when the body was not
            the API's error JSON (e.g. a proxy's HTML page).
        message: for people.
        field: the request field or query parameter at fault, when there is one.
        details: machine-readable particulars (for ``quota_exceeded``: ``scope``,
            ``limit``, ``used``, ``requested``, ``day``, ``resets_at``), or None.
        retry_after: seconds the server asked to wait (``Retry-After``), or None.
        response: the :class:`httpx.Response`, when there is one.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details
        self.retry_after = retry_after
        self.response = response
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status} {self.code}: {self.message}"
        if self.field:
            text += f" (field: {self.field})"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g} s)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, field={self.field!r}, details={self.details!r}, "
            f"retry_after={self.retry_after!r})"
        )


class BadRequestError(OffpeakError):
    """400: a body that is not JSON, a bad query parameter or cursor, a malformed Idempotency-Key."""


class AuthenticationError(OffpeakError):
    """401: no, a malformed or an unknown API key."""


class NotFoundError(OffpeakError):
    """404: nothing of this tenant has this id (another tenant's objects are 404 too)."""


class ConflictError(OffpeakError):
    """409: ``idempotency_conflict``, ``not_cancellable``, ``not_upgradable``, ``schedule_conflict``, ..."""


class PayloadTooLargeError(OffpeakError):
    """413: the body, an input or metadata is over its size limit."""


class UnprocessableEntityError(OffpeakError):
    """422: well-formed JSON that is not acceptable (``invalid_field``, ``unknown_model``, ...)."""


class RateLimitError(OffpeakError):
    """429."""


class QuotaExceededError(RateLimitError):
    """429 ``quota_exceeded``: a daily credit limit is reached; ``details`` says which, and
    ``retry_after`` is the time until the day resets (hours, so never waited for)."""


class ServerError(OffpeakError):
    """5xx."""


class ServiceUnavailableError(ServerError):
    """503 ``unavailable``: the database is unreachable; retry later."""


class TruncatedStreamError(OffpeakError):
    """A JSON Lines body (``groups.results``) ended in the middle of a line: the server
    stopped the stream early (e.g. a database failure mid-stream)."""


class WebhookVerificationError(Exception):
    """A webhook delivery whose headers, timestamp or signature do not check out."""


_BY_STATUS: dict[int, type[OffpeakError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    None when absent or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000": UTC as RFC 5322 says
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response) -> OffpeakError:
    """The typed error of an error answer; its body must have been read."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    code = f"http_{status}"
    message = response.reason_phrase or "error"
    field: str | None = None
    details: dict[str, Any] | None = None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code = error["code"]
        message = str(error.get("message", message))
        field = error["field"] if isinstance(error.get("field"), str) else None
        details = error["details"] if isinstance(error.get("details"), dict) else None
    else:
        text = response.text.strip()
        if text:
            message = text[:500]
    if status == 429 and code == "quota_exceeded":
        cls: type[OffpeakError] = QuotaExceededError
    else:
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else OffpeakError)
    return cls(
        status=status,
        code=code,
        message=message,
        field=field,
        details=details,
        retry_after=retry_after,
        response=response,
    )

"""Retries, as httpx transports that both the generated code and the hand-written layer use.

* A 429 or 503 answer is sent again after its ``Retry-After`` (delay-seconds or an HTTP
  date), or, without one, after an exponential backoff with jitter; at most
  ``max_attempts`` attempts in all. A ``Retry-After`` longer than ``max_wait`` is not
  waited for: the answer is returned at once (and raised as a typed error), so that a
  ``quota_exceeded`` whose day resets in hours surfaces immediately.
* A connection error is retried (with backoff) when sending the request again cannot
  repeat its effect: the connection was never made (nothing was sent), or the request is
  idempotent: ``GET``, ``HEAD``, ``OPTIONS``, ``PUT``, ``DELETE``, ``PATCH`` (offpeak's
  PATCHes replace fields), a request with an ``Idempotency-Key`` header (the client puts
  one on every submission the API document allows it on), and ``POST /v1/jobs/{id}/upgrade``
  (the server makes an upgrade once, however often asked). Other POSTs (``rotate-secret``,
  ``replay``) are not sent again once a connection broke mid-request: they might have
  taken effect.

A retried request is the same :class:`httpx.Request`: same body, same headers, so the same
``Idempotency-Key`` on every attempt.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .errors import parse_retry_after

__all__ = ["AsyncRetryTransport", "RetryPolicy", "RetryTransport"]

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
_UPGRADE_PATH = re.compile(r"/v1/jobs/[^/]+/upgrade/?$")
# Errors raised before anything of the request was written: always safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The connection failed (refused, reset, timed out, closed mid-answer): worth another try.
# Not retried: errors of the request itself (httpx.LocalProtocolError: an illegal header
# value; httpx.UnsupportedProtocol), which would fail the same way again.
_RETRYABLE = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries.

    Attributes:
        max_attempts: attempts in all, the first included (1: never retry).
        max_wait: the longest ``Retry-After`` (seconds) waited for; a longer one is
            returned at once as the error it is.
        backoff_base: the first backoff without ``Retry-After`` (seconds), doubled per attempt...
        backoff_max: ...up to this; each backoff is drawn uniformly from [d/2, d] (jitter).
        statuses: the statuses retried.
    """

    max_attempts: int = 4
    max_wait: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_wait < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("max_wait, backoff_base and backoff_max must not be negative")

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), with jitter."""
        d = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(d / 2, d)

    def delay_for(self, response: httpx.Response, attempt: int) -> float | None:
        """How long to wait before sending again after ``response``; None: do not retry."""
        if response.status_code not in self.statuses or attempt >= self.max_attempts:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_wait:
            return None
        return retry_after

    def delay_for_error(self, request: httpx.Request, error: Exception, attempt: int) -> float | None:
        """How long to wait before sending again after a transport error; None: raise it."""
        if attempt >= self.max_attempts or not isinstance(error, _RETRYABLE):
            return None
        if isinstance(error, _NOT_SENT) or is_idempotent(request):
            return self.backoff(attempt)
        return None


def is_idempotent(request: httpx.Request) -> bool:
    """Whether sending ``request`` twice has the effect of sending it once."""
    if request.method in _IDEMPOTENT_METHODS:
        return True
    if "idempotency-key" in request.headers:
        return True
    return request.method == "POST" and _UPGRADE_PATH.search(request.url.path) is not None


class RetryTransport(httpx.BaseTransport):
    """Wraps a transport (by default :class:`httpx.HTTPTransport`) with :class:`RetryPolicy`."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._transport = transport if transport is not None else httpx.HTTPTransport()
        self.policy = policy if policy is not None else RetryPolicy()
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body must be replayable
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._transport.handle_request(request)
            except httpx.TransportError as error:
                delay = self.policy.delay_for_error(request, error, attempt)
                if delay is None:
                    raise
                self._sleep(delay)
                continue
            delay = self.policy.delay_for(response, attempt)
            if delay is None:
                return response
            response.read()
            response.close()
            self._sleep(delay)

    def close(self) -> None:
        self._transport.close()


class AsyncRetryTransport(httpx.AsyncBaseTransport):
    """Wraps an async transport (by default :class:`httpx.AsyncHTTPTransport`) with :class:`RetryPolicy`."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self.policy = policy if policy is not None else RetryPolicy()
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._transport.handle_async_request(request)
            except httpx.TransportError as error:
                delay = self.policy.delay_for_error(request, error, attempt)
                if delay is None:
                    raise
                await self._sleep(delay)
                continue
            delay = self.policy.delay_for(response, attempt)
            if delay is None:
                return response
            await response.aread()
            await response.aclose()
            await self._sleep(delay)

    async def aclose(self) -> None:
        await self._transport.aclose()

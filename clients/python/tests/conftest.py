"""Fixtures: clients of the three tenants of a real offpeak stack, and small local HTTP
servers (a scripted fake API for the client's own retry logic, a webhook receiver).

The live tests need, from ``offpeak-client-stack`` (or any offpeak with such tenants):
``OFFPEAK_URL``, ``OFFPEAK_API_KEY`` (tenant in UTC), ``OFFPEAK_RIVAL_API_KEY`` (another
tenant), ``OFFPEAK_FRUGAL_API_KEY`` (a daily limit of 10 credits), ``OFFPEAK_SIM_URL``
(the provider simulator). Without ``OFFPEAK_URL`` they are skipped (test.sh refuses to
run without it).
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from offpeak_client import AsyncOffpeak, Offpeak

# ------------------------------------------------------------------ live stack


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set: run under offpeak-client-stack (see README)")
    return value


@pytest.fixture(scope="session")
def offpeak_url() -> str:
    return _env("OFFPEAK_URL")


@pytest.fixture(scope="session")
def api_key() -> str:
    return _env("OFFPEAK_API_KEY")


@pytest.fixture(scope="session")
def sim_url() -> str:
    return _env("OFFPEAK_SIM_URL")


@pytest.fixture
def client(offpeak_url: str, api_key: str) -> Iterator[Offpeak]:
    with Offpeak(api_key, offpeak_url) as c:
        yield c


@pytest.fixture
async def aclient(offpeak_url: str, api_key: str):
    async with AsyncOffpeak(api_key, offpeak_url) as c:
        yield c


@pytest.fixture
def rival(offpeak_url: str) -> Iterator[Offpeak]:
    with Offpeak(_env("OFFPEAK_RIVAL_API_KEY"), offpeak_url) as c:
        yield c


@pytest.fixture
def frugal(offpeak_url: str) -> Iterator[Offpeak]:
    with Offpeak(_env("OFFPEAK_FRUGAL_API_KEY"), offpeak_url) as c:
        yield c


@pytest.fixture
def tag() -> str:
    """Unique per test: prompts (so that the exact cache never answers one test from
    another's job), names, metadata."""
    return uuid.uuid4().hex[:12]


_TIMEZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Australia/Sydney", "Europe/Berlin"]


@pytest.fixture(scope="session")
def held_tz(offpeak_url: str, api_key: str) -> str:
    """A timezone whose off-peak window is not open now (and not within the next hour), so
    that a ``low`` job submitted in it stays ``held`` for the whole test."""
    now = datetime.datetime.now(datetime.UTC)
    with Offpeak(api_key, offpeak_url) as c:
        for tz in _TIMEZONES:
            window = c.windows.next(timezone=tz)
            if not window.open_now and window.opens_at - now > datetime.timedelta(hours=1):
                return tz
    raise AssertionError("no timezone found whose window is more than an hour away")


def sim_stats(sim_url: str) -> dict[str, Any]:
    return httpx.get(f"{sim_url}/v1/stats", timeout=10).json()


# ------------------------------------------------------------------ local HTTP servers


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialised unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    chunks: list[bytes] | None = None  # a chunked body, written piece by piece
    between_chunks: Callable[[int], None] | None = None  # called after chunk i is flushed


class ScriptedServer:
    """A tiny HTTP/1.1 server on 127.0.0.1 that answers from a script of :class:`Reply`s
    (the last one repeats) and records every request: to test the client's own logic
    (retries, Idempotency-Key reuse, streaming) where the real server cannot be made to
    answer 429 or 503 on demand."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.requests.append(
                        Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is not None:
                    self.send_header("Content-Type", "application/jsonl")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i, chunk in enumerate(reply.chunks):
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        if reply.between_chunks:
                            reply.between_chunks(i)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                if not isinstance(reply.body, bytes):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[Reply]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(replies: list[Reply]) -> ScriptedServer:
        server = ScriptedServer(replies)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class WebhookReceiver:
    """An http.server in a thread on 127.0.0.1:0 that records every POST (headers, raw body)
    and answers 204: the endpoint offpeak delivers events to in the end-to-end tests."""

    def __init__(self) -> None:
        self.deliveries: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                # http.server's headers (an email.message.Message) as they are: any case works.
                receiver.deliveries.put((self.headers, body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/offpeak"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def next_event(receiver: WebhookReceiver, match: Callable[[dict[str, Any], Any], bool], timeout: float = 60.0):
    """The next delivery whose (unverified) JSON payload and headers satisfy ``match``;
    deliveries of other tests' events are passed over."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching webhook delivery within {timeout} s")
        try:
            headers, body = receiver.deliveries.get(timeout=remaining)
        except queue.Empty:
            continue
        try:
            payload = json.loads(body)
        except ValueError:
            continue
        if match(payload, headers):
            return headers, body

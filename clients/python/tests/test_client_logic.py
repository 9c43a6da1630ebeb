"""The client's own logic against a scripted local server: retries on 429/503 honouring
Retry-After (seconds and HTTP date), backoff without it, failing fast on a long
Retry-After, the same Idempotency-Key on every retry, connection errors, typed errors from
odd bodies, and the JSON Lines stream parsed as it arrives. The real server cannot be made
to answer 429/503 on demand; these test nothing but the client."""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
import uuid

import httpx
import pytest
from conftest import Reply

from offpeak_client import (
    AsyncOffpeak,
    BadRequestError,
    ConflictError,
    NotFoundError,
    Offpeak,
    OffpeakError,
    QuotaExceededError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    TruncatedStreamError,
)
from offpeak_client.errors import parse_retry_after

NOW = "2026-12-04T20:00:00Z"


def job_json(**overrides):
    job = {
        "id": str(uuid.uuid4()),
        "state": "held",
        "model": "flux-schnell",
        "input": {"prompt": "p"},
        "priority": "low",
        "timezone": "UTC",
        "user_id": None,
        "metadata": None,
        "release_at": NOW,
        "window_closes_at": None,
        "batch_id": None,
        "attempts": 0,
        "max_attempts": 5,
        "result": None,
        "error": None,
        "credits": None,
        "cache_hit": False,
        "created_at": NOW,
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
        "use_case": None,
        "cache_source": None,
        "group_id": None,
        "cache_kind": None,
        "cache_similarity": None,
        "cache": "exact",
        "parent_id": None,
        "children": [],
        "upgrade": None,
    }
    job.update(overrides)
    return job


def err(code, message="m", **extra):
    return {"error": {"code": code, "message": message, **extra}}


FAST = RetryPolicy(max_attempts=4, max_wait=5, backoff_base=0.01, backoff_max=0.05)


# ------------------------------------------------------------------ retries, sync


def test_retries_503_then_429_with_retry_after_then_succeeds_with_one_idempotency_key(scripted):
    server = scripted(
        [
            Reply(503, err("unavailable", "database down"), {"Retry-After": "1"}),
            Reply(429, err("rate_limited"), {"Retry-After": "0"}),
            Reply(201, job_json()),
        ]
    )
    with Offpeak("op_test", server.url, retry=FAST) as client:
        started = time.monotonic()
        job = client.jobs.submit("flux-schnell", {"prompt": "p"})
        elapsed = time.monotonic() - started
    assert job.state.value == "held"
    assert len(server.requests) == 3
    assert elapsed >= 0.9, "Retry-After: 1 was honoured"
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert len(keys) == 1, "every retry carries the same Idempotency-Key"
    uuid.UUID(keys.pop())  # a random UUID by default
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer op_test"}
    assert {r.body for r in server.requests} == {server.requests[0].body}
    assert json.loads(server.requests[0].body)["model"] == "flux-schnell"


def test_each_submission_gets_its_own_key_and_a_callers_key_is_sent_as_is(scripted):
    server = scripted([Reply(201, job_json())])
    with Offpeak("op_test", server.url, retry=FAST) as client:
        client.jobs.submit("flux-schnell", {"prompt": "a"})
        client.jobs.submit("flux-schnell", {"prompt": "a"})
        client.jobs.submit("flux-schnell", {"prompt": "a"}, idempotency_key="thumb-42")
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert keys[0] != keys[1]
    assert keys[2] == "thumb-42"


def test_retry_after_as_an_http_date(scripted):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    server = scripted([Reply(503, err("unavailable"), {"Retry-After": when}), Reply(200, job_json())])
    with Offpeak("op_test", server.url, retry=FAST) as client:
        started = time.monotonic()
        client.jobs.get(str(uuid.uuid4()))
        elapsed = time.monotonic() - started
    assert len(server.requests) == 2
    assert 0.5 <= elapsed < 5


def test_backoff_with_jitter_without_retry_after(scripted):
    server = scripted([Reply(429, err("busy")), Reply(503, err("unavailable")), Reply(200, job_json())])
    policy = RetryPolicy(max_attempts=4, backoff_base=0.2, backoff_max=1.0)
    with Offpeak("op_test", server.url, retry=policy) as client:
        started = time.monotonic()
        client.jobs.get(str(uuid.uuid4()))
        elapsed = time.monotonic() - started
    assert len(server.requests) == 3
    # waits drawn from [0.1, 0.2] then [0.2, 0.4]
    assert 0.3 <= elapsed < 2


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(backoff_base=1, backoff_max=4)
    for attempt, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (2, 4), (2, 4)], start=1):
        for _ in range(50):
            assert low <= policy.backoff(attempt) <= high


def test_a_long_retry_after_is_not_waited_for(scripted):
    body = err(
        "quota_exceeded",
        "daily credit limit of 10 for tenant 'frugal' reached",
        field="user_id",
        details={"scope": "tenant", "limit": 10, "used": 10, "requested": 5},
    )
    server = scripted([Reply(429, body, {"Retry-After": "13150"})])
    with Offpeak("op_test", server.url, max_attempts=5) as client:  # default max wait (30 s)
        started = time.monotonic()
        with pytest.raises(QuotaExceededError) as raised:
            client.jobs.submit("flux-pro", {"prompt": "p"})
        elapsed = time.monotonic() - started
    assert elapsed < 1
    assert len(server.requests) == 1
    error = raised.value
    assert isinstance(error, RateLimitError) and isinstance(error, OffpeakError)
    assert (error.status, error.code, error.field) == (429, "quota_exceeded", "user_id")
    assert error.retry_after == 13150
    assert error.details["limit"] == 10
    assert "frugal" in error.message and "quota_exceeded" in str(error)


def test_max_retry_wait_is_configurable(scripted):
    server = scripted([Reply(503, err("unavailable"), {"Retry-After": "2"}), Reply(200, job_json())])
    with Offpeak("op_test", server.url, max_retry_wait=1) as client:
        with pytest.raises(ServiceUnavailableError) as raised:
            client.jobs.get(str(uuid.uuid4()))
    assert raised.value.retry_after == 2
    assert isinstance(raised.value, ServerError)
    assert len(server.requests) == 1


def test_gives_up_after_max_attempts(scripted):
    server = scripted([Reply(503, err("unavailable"), {"Retry-After": "0"})])
    with Offpeak("op_test", server.url, max_attempts=3) as client, pytest.raises(ServiceUnavailableError):
        client.jobs.list()
    assert len(server.requests) == 3


def test_other_errors_are_not_retried_and_are_typed(scripted):
    server = scripted(
        [
            Reply(409, err("idempotency_conflict", "used with another body")),
            Reply(404, err("not_found", "job not found")),
            Reply(400, err("invalid_cursor", "bad cursor", field="cursor")),
            Reply(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}),
        ]
    )
    with Offpeak("op_test", server.url, retry=FAST) as client:
        with pytest.raises(ConflictError) as conflict:
            client.jobs.submit("flux-schnell", {"prompt": "p"}, idempotency_key="k")
        assert conflict.value.code == "idempotency_conflict"
        with pytest.raises(NotFoundError):
            client.jobs.get(str(uuid.uuid4()))
        with pytest.raises(BadRequestError) as bad:
            client.jobs.list(cursor="nope")
        assert bad.value.field == "cursor"
        with pytest.raises(ServerError) as gateway:
            client.tenant.get()
        assert gateway.value.code == "http_502" and "bad gateway" in gateway.value.message
    assert len(server.requests) == 4


def test_connection_errors_are_retried_on_idempotent_requests_only(scripted):
    server = scripted([Reply(drop=True), Reply(200, job_json())])
    with Offpeak("op_test", server.url, retry=FAST) as client:
        client.jobs.get(str(uuid.uuid4()))  # GET: retried
    assert len(server.requests) == 2

    server = scripted([Reply(drop=True), Reply(201, job_json())])
    with Offpeak("op_test", server.url, retry=FAST) as client:
        client.jobs.submit("flux-schnell", {"prompt": "p"})  # with an Idempotency-Key: retried
    assert len(server.requests) == 2
    assert server.requests[0].headers["idempotency-key"] == server.requests[1].headers["idempotency-key"]

    bulk_answer = {
        "ids": [],
        "count": 0,
        "state": "held",
        "cache_hits": 0,
        "release_at": NOW,
        "window_closes_at": None,
        "group_id": str(uuid.uuid4()),
    }
    server = scripted([Reply(drop=True), Reply(201, bulk_answer)])
    with Offpeak("op_test", server.url, retry=FAST) as client:
        client.jobs.bulk("flux-schnell", [{"prompt": "p"}])  # keyed too: retried
    assert len(server.requests) == 2
    assert server.requests[0].headers["idempotency-key"] == server.requests[1].headers["idempotency-key"]

    rotated = {"id": str(uuid.uuid4()), "secret": "whsec_x", "previous_secret_expires_at": NOW}
    server = scripted([Reply(drop=True), Reply(200, rotated)])
    with Offpeak("op_test", server.url, retry=FAST) as client:
        with pytest.raises(httpx.TransportError):  # might have rotated: not sent twice
            client.webhooks.rotate_secret(str(uuid.uuid4()))
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_whatever_the_method(unused_tcp_port):
    attempts = []

    def sleep(seconds):
        attempts.append(seconds)

    from offpeak_client import RetryTransport

    transport = RetryTransport(policy=RetryPolicy(max_attempts=3), sleep=sleep)
    with httpx.Client(transport=transport, base_url=f"http://127.0.0.1:{unused_tcp_port}") as http:
        with pytest.raises(httpx.ConnectError):
            http.post("/v1/webhooks/x/rotate-secret")
    assert len(attempts) == 2  # nothing was sent: safe to send again


def test_parse_retry_after():
    assert parse_retry_after("120") == 120
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 60, usegmt=True)
    assert 55 <= parse_retry_after(date, now=now) <= 61
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0


# ------------------------------------------------------------------ retries, async


async def test_async_retries_with_one_idempotency_key(scripted):
    server = scripted(
        [
            Reply(429, err("busy"), {"Retry-After": "1"}),
            Reply(503, err("unavailable")),
            Reply(201, job_json()),
        ]
    )
    async with AsyncOffpeak("op_test", server.url, retry=FAST) as client:
        started = time.monotonic()
        await client.jobs.submit("flux-schnell", {"prompt": "p"})
        elapsed = time.monotonic() - started
    assert len(server.requests) == 3
    assert elapsed >= 0.9
    assert len({r.headers["idempotency-key"] for r in server.requests}) == 1


async def test_async_long_retry_after_fails_fast(scripted):
    server = scripted([Reply(429, err("quota_exceeded", "limit"), {"Retry-After": "40000"})])
    async with AsyncOffpeak("op_test", server.url) as client:
        started = time.monotonic()
        with pytest.raises(QuotaExceededError) as raised:
            await client.jobs.submit("flux-pro", {"prompt": "p"})
    assert time.monotonic() - started < 1
    assert raised.value.retry_after == 40000
    assert len(server.requests) == 1


async def test_async_connection_error_on_get_is_retried(scripted):
    server = scripted([Reply(drop=True), Reply(200, job_json())])
    async with AsyncOffpeak("op_test", server.url, retry=FAST) as client:
        await client.jobs.get(str(uuid.uuid4()))
    assert len(server.requests) == 2


# ------------------------------------------------------------------ pagination


def test_iterate_follows_next_cursor(scripted):
    jobs = [job_json() for _ in range(5)]
    server = scripted(
        [
            Reply(200, {"jobs": jobs[:2], "next_cursor": jobs[1]["id"]}),
            Reply(200, {"jobs": jobs[2:4], "next_cursor": jobs[3]["id"]}),
            Reply(200, {"jobs": jobs[4:], "next_cursor": None}),
        ]
    )
    with Offpeak("op_test", server.url) as client:
        seen = [str(j.id) for j in client.jobs.iterate(state="held", model="flux-schnell", limit=2)]
    assert seen == [j["id"] for j in jobs]
    assert [r.path.split("?")[1] for r in server.requests] == [
        "state=held&model=flux-schnell&limit=2",
        f"state=held&model=flux-schnell&limit=2&cursor={jobs[1]['id']}",
        f"state=held&model=flux-schnell&limit=2&cursor={jobs[3]['id']}",
    ]


# ------------------------------------------------------------------ the JSON Lines stream


def result_line(i):
    return {"id": str(uuid.uuid4()), "state": "succeeded", "result": {"n": i}, "credits": 1, "metadata": None}


def test_results_are_parsed_as_they_stream_in(scripted):
    """The second chunk is only written once the client has handed out the first line:
    a client that buffered the whole body would never get there."""
    first_seen = threading.Event()
    lines = [result_line(0), result_line(1), result_line(2)]
    encoded = [json.dumps(line).encode() + b"\n" for line in lines]

    def between(i):
        if i == 0:
            assert first_seen.wait(10), "the client did not yield the first line before the rest arrived"

    chunks = [encoded[0], encoded[1][:10], encoded[1][10:] + encoded[2]]
    server = scripted([Reply(200, chunks=chunks, between_chunks=between)])
    got = []
    with Offpeak("op_test", server.url) as client:
        for line in client.groups.results(str(uuid.uuid4())):
            got.append(line)
            first_seen.set()
    assert [str(r.id) for r in got] == [line["id"] for line in lines]
    assert got[1].result.to_dict() == {"n": 1}
    assert server.requests[0].headers["accept"] == "application/jsonl"


def test_a_truncated_results_stream_raises(scripted):
    chunks = [json.dumps(result_line(0)).encode() + b"\n", b'{"id": "01a2', b"42b7-"]
    server = scripted([Reply(200, chunks=chunks)])
    with Offpeak("op_test", server.url) as client:
        got = []
        with pytest.raises(TruncatedStreamError):
            for line in client.groups.results(str(uuid.uuid4())):
                got.append(line)
    assert len(got) == 1


def test_results_of_an_unknown_group_raise_not_found(scripted):
    server = scripted([Reply(404, err("not_found", "group not found"))])
    with Offpeak("op_test", server.url) as client, pytest.raises(NotFoundError):
        list(client.groups.results(str(uuid.uuid4())))


async def test_async_results_stream(scripted):
    first_seen = threading.Event()
    lines = [result_line(i) for i in range(4)]
    encoded = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    def between(i):
        if i == 0:
            assert first_seen.wait(10)

    server = scripted([Reply(200, chunks=[encoded[:300], encoded[300:]], between_chunks=between)])
    got = []
    async with AsyncOffpeak("op_test", server.url) as client:
        async for line in client.groups.results(str(uuid.uuid4())):
            got.append(line)
            first_seen.set()
            await asyncio.sleep(0)
    assert [str(r.id) for r in got] == [line["id"] for line in lines]


def test_readyz_503_is_an_answer(scripted):
    server = scripted(
        [Reply(503, {"status": "not_ready", "checks": {"postgres": True, "rabbitmq": False}}, {"Retry-After": "0"})]
    )
    with Offpeak("op_test", server.url, max_attempts=1) as client:
        ready = client.health.ready()
    assert ready.status.value == "not_ready" and ready.checks.rabbitmq is False


def test_api_key_comes_from_the_environment(monkeypatch, scripted):
    server = scripted([Reply(200, {"status": "ok"})])
    monkeypatch.setenv("OFFPEAK_API_KEY", "op_from_env")
    monkeypatch.setenv("OFFPEAK_URL", server.url)
    with Offpeak() as client:
        client.health.check()
    assert server.requests[0].headers["authorization"] == "Bearer op_from_env"
    monkeypatch.delenv("OFFPEAK_API_KEY")
    with pytest.raises(ValueError):
        Offpeak()


def test_keys_go_where_the_document_takes_them(scripted):
    from offpeak_client._generated.api.jobs import submit_job, submit_jobs_bulk, upgrade_job
    from offpeak_client._ops import takes_idempotency_key

    assert takes_idempotency_key(submit_job) and takes_idempotency_key(submit_jobs_bulk)
    server = scripted([Reply(201, job_json())])
    with Offpeak("op_test", server.url) as client:
        if not takes_idempotency_key(upgrade_job):
            with pytest.raises(TypeError):
                client.jobs.upgrade(str(uuid.uuid4()), idempotency_key="mine")
            assert server.requests == []
        client.jobs.upgrade(str(uuid.uuid4()))
    assert json.loads(server.requests[-1].body) == {}  # no arguments: the recorded target


def test_the_generated_functions_share_the_key_and_retries(scripted):
    from offpeak_client._generated.api.jobs import get_job

    server = scripted([Reply(503, err("unavailable"), {"Retry-After": "0"}), Reply(200, job_json(state="queued"))])
    with Offpeak("op_test", server.url, retry=FAST) as client:
        job = get_job.sync(str(uuid.uuid4()), client=client.generated)
    assert job.state.value == "queued"
    assert len(server.requests) == 2
    assert server.requests[1].headers["authorization"] == "Bearer op_test"

"""The async client (AsyncOffpeak) against a real offpeak: the main paths, and the
thumbnails-and-webhook story with an asyncio receiver."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import time
import uuid

import pytest

from offpeak_client import (
    AsyncOffpeak,
    ConflictError,
    JobState,
    NotFoundError,
    OffpeakError,
    Priority,
    QuotaExceededError,
    WebhookVerificationError,
    verify_webhook,
)

pytestmark = pytest.mark.live

UTC = datetime.UTC


async def cancel_quietly(client: AsyncOffpeak, *ids) -> None:
    for id in ids:
        with contextlib.suppress(OffpeakError):
            await client.jobs.cancel(id)


class AsyncReceiver:
    """A minimal HTTP/1.1 server on asyncio (127.0.0.1, a free port) that queues every
    request's headers (a plain dict, as received) and raw body, and answers 204."""

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def __aenter__(self) -> AsyncReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/offpeak"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers: dict[str, str] = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip()] = value.strip()
                length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length)
                await self.deliveries.put((headers, body))
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def next(self, match, timeout: float = 60.0) -> tuple[dict[str, str], bytes]:
        async with asyncio.timeout(timeout):
            while True:
                headers, body = await self.deliveries.get()
                try:
                    payload = json.loads(body)
                except ValueError:
                    continue
                if match(payload, {k.lower(): v for k, v in headers.items()}):
                    return headers, body


async def test_async_submit_get_wait_and_idempotency(aclient, tag, held_tz):
    job = await aclient.jobs.submit("flux-schnell", {"prompt": f"async {tag}"}, priority="normal", metadata={"t": tag})
    done = await aclient.jobs.wait(job.id, timeout=60)
    assert done.state is JobState.SUCCEEDED and done.credits_ == 1 and done.metadata == {"t": tag}
    assert (await aclient.jobs.get(job.id)).id == job.id

    key = f"async-{tag}"
    first = await aclient.jobs.submit("flux-schnell", {"prompt": f"k {tag}"}, timezone=held_tz, idempotency_key=key)
    unkeyed = await aclient.jobs.submit("flux-schnell", {"prompt": f"k {tag}"}, timezone=held_tz)
    try:
        assert unkeyed.id != first.id
        replay = await aclient.jobs.submit(
            "flux-schnell", {"prompt": f"k {tag}"}, timezone=held_tz, idempotency_key=key
        )
        assert replay.id == first.id
        with pytest.raises(ConflictError) as raised:
            await aclient.jobs.submit("flux-schnell", {"prompt": f"other {tag}"}, idempotency_key=key)
        assert raised.value.code == "idempotency_conflict"
    finally:
        await cancel_quietly(aclient, first.id, unkeyed.id)


async def test_async_bulk_group_and_results_stream(aclient, tag):
    inputs = [{"prompt": f"async sku {i} {tag}"} for i in range(4)]
    key = f"async-bulk-{tag}"
    bulk = await aclient.jobs.bulk("flux-schnell", inputs, priority="normal", idempotency_key=key)
    replay = await aclient.jobs.bulk("flux-schnell", inputs, priority="normal", idempotency_key=key)
    assert replay.ids == bulk.ids and replay.group_id == bulk.group_id
    with pytest.raises(ConflictError):
        await aclient.jobs.bulk("flux-schnell", inputs[:1], priority="normal", idempotency_key=key)
    group = await aclient.groups.wait(bulk.group_id, timeout=60)
    assert group.counts.succeeded == 4 and group.credits_ == 4
    lines = [line async for line in aclient.groups.results(bulk.group_id)]
    assert [line.id for line in lines] == sorted(bulk.ids, key=str)
    assert all(line.state is JobState.SUCCEEDED for line in lines)
    # Leaving early, closed at once.
    async with contextlib.aclosing(aclient.groups.results(bulk.group_id)) as stream:
        async for line in stream:
            assert line.id == lines[0].id
            break
    with pytest.raises(NotFoundError):
        async for _ in aclient.groups.results(str(uuid.uuid4())):
            pass


async def test_async_iterate_across_pages_and_cancel(aclient, tag, held_tz):
    bulk = await aclient.jobs.bulk(
        "flux-dev", [{"prompt": f"async page {i} {tag}"} for i in range(5)], timezone=held_tz
    )
    try:
        page = await aclient.jobs.list(state="held", model="flux-dev", limit=2)
        assert len(page.jobs) == 2 and page.next_cursor
        ids = [str(job.id) async for job in aclient.jobs.iterate(state="held", model="flux-dev", limit=2)]
        assert {str(id) for id in bulk.ids} <= set(ids) and len(ids) == len(set(ids))
        cancelled = await aclient.jobs.cancel(bulk.ids[0])
        assert cancelled.state is JobState.CANCELLED
        with pytest.raises(ConflictError) as raised:
            await aclient.jobs.cancel(bulk.ids[0])
        assert raised.value.code == "not_cancellable"
    finally:
        await cancel_quietly(aclient, *bulk.ids)


async def test_async_upgrade(aclient, tag):
    preview = await aclient.jobs.submit(
        "auto", {"prompt": f"async teapot {tag}"}, use_case="hero-image", preview={"use_case": "thumbnail"}
    )
    await aclient.jobs.wait(preview.id)
    upgraded = await aclient.jobs.upgrade(preview.id)
    try:
        assert upgraded.parent_id == preview.id and upgraded.model == "flux-pro" and upgraded.priority is Priority.LOW
        assert (await aclient.jobs.upgrade(preview.id)).id == upgraded.id
    finally:
        await cancel_quietly(aclient, upgraded.id)


async def test_async_usage_tenant_windows_health(aclient):
    usage = await aclient.usage.get(group_by="day")
    assert usage.group_by == "day" and usage.timezone == "UTC"
    tenant = await aclient.tenant.get()
    assert tenant.timezone == "UTC"
    window = await aclient.windows.next(timezone="Asia/Kolkata", at="2027-01-01T12:00:00Z")
    assert window.opens_at == datetime.datetime(2027, 1, 1, 20, 30, tzinfo=UTC)  # 02:00 IST, the next day
    assert window.duration_seconds == 4 * 3600 and window.open_now is False
    assert (await aclient.health.check()).status.value == "ok"
    assert (await aclient.health.ready()).status.value == "ready"
    assert "offpeak_" in await aclient.health.metrics()
    assert "paths" in await aclient.openapi()


async def test_async_schedules_crud(aclient, tag):
    schedule = await aclient.schedules.create(
        f"async-{tag}", "@daily", {"model": "flux-schnell", "input": {"prompt": tag}}, paused=True
    )
    try:
        assert schedule.paused is True and schedule.next_fire_at is None
        assert (await aclient.schedules.get(schedule.id)).name == f"async-{tag}"
        assert schedule.id in [s.id async for s in aclient.schedules.iterate(limit=2)]
        assert (await aclient.schedules.list(limit=1)).schedules
        resumed = await aclient.schedules.update(schedule.id, paused=False, timezone="Asia/Tokyo")
        assert resumed.paused is False and resumed.timezone == "Asia/Tokyo" and resumed.next_fire_at is not None
    finally:
        await aclient.schedules.delete(schedule.id)
    with pytest.raises(NotFoundError):
        await aclient.schedules.get(schedule.id)


async def test_async_webhooks_crud(aclient, tag):
    hook = await aclient.webhooks.create("http://127.0.0.1:9/async", events=["job.dead"], description=tag)
    try:
        assert hook.secret.startswith("whsec_")
        assert hook.id in [w.id for w in (await aclient.webhooks.list()).webhooks]
        assert (await aclient.webhooks.update(hook.id, enabled=False)).enabled is False
        assert (await aclient.webhooks.get(hook.id)).enabled is False
        assert (await aclient.webhooks.rotate_secret(hook.id)).secret != hook.secret
        assert (await aclient.webhooks.deliveries(hook.id)).deliveries == []
        assert [d async for d in aclient.webhooks.iterate_deliveries(hook.id)] == []
    finally:
        await aclient.webhooks.delete(hook.id)
    with pytest.raises(NotFoundError):
        await aclient.webhooks.get(hook.id)


async def test_async_tonights_thumbnails_and_a_webhook_when_the_group_completes(aclient, tag):
    async with AsyncReceiver() as receiver:
        hook = await aclient.webhooks.create(receiver.url, events=["group.completed"])
        try:
            bulk = await aclient.jobs.bulk(
                "flux-schnell",
                [{"prompt": f"async thumbnail {sku} {tag}", "width": 256} for sku in range(4)],
                priority="normal",
                metadata={"night": tag},
            )
            headers, body = await receiver.next(lambda event, _: event.get("data", {}).get("id") == str(bulk.group_id))
            assert "Webhook-Signature" in headers or "webhook-signature" in headers  # a plain dict, as sent
            event = verify_webhook(hook.secret, headers, body)
            assert event["type"] == "group.completed"
            assert event["data"]["counts"]["succeeded"] == 4 and event["data"]["name"] is None
            timestamp = int(next(v for k, v in headers.items() if k.lower() == "webhook-timestamp"))
            assert abs(timestamp - time.time()) < 60
            with pytest.raises(WebhookVerificationError):
                verify_webhook(
                    hook.secret, headers, body.replace(str(bulk.group_id).encode(), str(uuid.uuid4()).encode())
                )
            with pytest.raises(WebhookVerificationError):
                verify_webhook(hook.secret, headers, body, now=timestamp + 600)
            with pytest.raises(WebhookVerificationError):
                verify_webhook("whsec_" + base64.b64encode(os.urandom(32)).decode(), headers, body)
            lines = [line async for line in aclient.groups.results(bulk.group_id)]
            assert len(lines) == 4 and all(line.metadata == {"night": tag} for line in lines)
        finally:
            await aclient.webhooks.delete(hook.id)


async def test_async_rival_isolation(aclient, offpeak_url, tag, held_tz):
    job = await aclient.jobs.submit("flux-schnell", {"prompt": f"async private {tag}"}, timezone=held_tz)
    try:
        async with AsyncOffpeak(os.environ["OFFPEAK_RIVAL_API_KEY"], offpeak_url) as rival:
            with pytest.raises(NotFoundError):
                await rival.jobs.get(job.id)
            with pytest.raises(NotFoundError):
                await rival.jobs.cancel(job.id)
            with pytest.raises(NotFoundError):
                await rival.groups.get(job.group_id or str(uuid.uuid4()))
            assert job.id not in [j.id async for j in rival.jobs.iterate(limit=1000)]
        assert (await aclient.jobs.get(job.id)).state is JobState.HELD
    finally:
        await cancel_quietly(aclient, job.id)


async def test_async_quota_exceeded_fails_fast(offpeak_url, tag):
    async with AsyncOffpeak(os.environ["OFFPEAK_FRUGAL_API_KEY"], offpeak_url) as frugal:
        tenant = await frugal.tenant.get()
        for i in range(tenant.quota.remaining // 5):
            await frugal.jobs.submit("flux-pro", {"prompt": f"async hero {i} {tag}"}, priority="normal")
        started = time.monotonic()
        with pytest.raises(QuotaExceededError) as raised:
            await frugal.jobs.submit("flux-pro", {"prompt": f"async one too many {tag}"}, priority="normal")
        assert time.monotonic() - started < 2
        assert raised.value.status == 429 and raised.value.retry_after > 30
        assert raised.value.details["scope"] == "tenant"

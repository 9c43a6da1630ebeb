"""The sync client (Offpeak) against a real offpeak: every operation of the document."""

from __future__ import annotations

import base64
import datetime
import os
import time
import uuid

import pytest
from conftest import next_event, sim_stats

from offpeak_client import (
    BadRequestError,
    CatchUp,
    ConflictError,
    JobState,
    NotFoundError,
    Offpeak,
    OffpeakError,
    Priority,
    QuotaExceededError,
    RateLimitError,
    UnprocessableEntityError,
    WebhookEventName,
    WebhookVerificationError,
    verify_webhook,
)
from offpeak_client.models import JobTemplateRequest, UsageGroupBy

pytestmark = pytest.mark.live

UTC = datetime.UTC


def cancel_quietly(client: Offpeak, *ids) -> None:
    for id in ids:
        try:
            client.jobs.cancel(id)
        except OffpeakError:
            pass


# ------------------------------------------------------------------ jobs


def test_submit_without_a_key_runs_at_once_when_normal(client, tag):
    job = client.jobs.submit(
        "flux-schnell",
        {"prompt": f"a lighthouse at dawn {tag}", "width": 512, "height": 512},
        priority="normal",
        user_id="u-17",
        metadata={"sku": 42, "tag": tag},
    )
    assert job.model == "flux-schnell"
    assert job.priority is Priority.NORMAL
    assert job.input_.to_dict()["prompt"] == f"a lighthouse at dawn {tag}"
    done = client.jobs.wait(job.id, timeout=60)
    assert done.state is JobState.SUCCEEDED
    assert done.credits_ == 1 and done.cache_hit is False
    assert done.metadata == {"sku": 42, "tag": tag}
    assert done.user_id == "u-17"
    assert isinstance(done.finished_at, datetime.datetime)
    assert done.result["model"] == "flux-schnell"
    again = client.jobs.get(job.id)
    assert again.id == job.id and again.state is JobState.SUCCEEDED


def test_submissions_without_a_key_are_distinct_jobs(client, tag, held_tz):
    body = {"prompt": f"same body {tag}"}
    a = client.jobs.submit("flux-schnell", body, timezone=held_tz)
    b = client.jobs.submit("flux-schnell", body, timezone=held_tz)
    try:
        assert a.id != b.id  # each call had its own random Idempotency-Key
        assert a.state is JobState.HELD and a.timezone == held_tz
        assert a.release_at > datetime.datetime.now(UTC)
    finally:
        cancel_quietly(client, a.id, b.id)


def test_a_callers_key_replays_the_job_and_refuses_another_body(client, tag, held_tz):
    key = f"thumb-{tag}"
    first = client.jobs.submit("flux-schnell", {"prompt": f"keyed {tag}"}, timezone=held_tz, idempotency_key=key)
    try:
        replay = client.jobs.submit("flux-schnell", {"prompt": f"keyed {tag}"}, timezone=held_tz, idempotency_key=key)
        assert replay.id == first.id
        with pytest.raises(ConflictError) as raised:
            client.jobs.submit("flux-schnell", {"prompt": f"another {tag}"}, timezone=held_tz, idempotency_key=key)
        assert raised.value.status == 409
        assert raised.value.code == "idempotency_conflict"
    finally:
        cancel_quietly(client, first.id)


def test_invalid_submissions_are_typed_errors(client, tag):
    with pytest.raises(UnprocessableEntityError) as raised:
        client.jobs.submit("flux-schnell", {"prompt": tag}, timezone="Mars/Olympus")
    assert (raised.value.status, raised.value.code, raised.value.field) == (422, "invalid_timezone", "timezone")
    with pytest.raises(UnprocessableEntityError) as raised:
        client.jobs.submit("no-such-model", {"prompt": tag})
    assert raised.value.code == "unknown_model"
    with pytest.raises(BadRequestError) as raised:
        client.jobs.submit("flux-schnell", {"prompt": tag}, idempotency_key="k" * 256)
    assert raised.value.code == "invalid_idempotency_key"


def test_a_repeat_is_answered_from_the_cache_and_billed_once(client, tag, sim_url):
    first = client.jobs.wait(
        client.jobs.submit("flux-dev", {"prompt": f"a blue teapot {tag}", "width": 1024}, priority="normal").id
    )
    assert first.state is JobState.SUCCEEDED and first.credits_ == 2
    billed = sim_stats(sim_url)["by_model"].get("flux-dev", 0)
    again = client.jobs.submit("flux-dev", {"width": 1024, "prompt": f"a blue teapot {tag}"}, priority="normal")
    assert again.state is JobState.SUCCEEDED and again.cache_hit is True
    assert again.credits_ == 0 and again.cache_source == first.id
    assert sim_stats(sim_url)["by_model"].get("flux-dev", 0) == billed


def test_bulk_makes_a_group_whose_results_stream(client, tag):
    inputs = [{"prompt": f"catalogue sku {i} {tag}"} for i in range(5)]
    bulk = client.jobs.bulk("flux-schnell", inputs, priority="normal", metadata={"batch": tag})
    assert bulk.count == 5 and len(bulk.ids) == 5 and bulk.cache_hits == 0
    group = client.groups.wait(bulk.group_id, timeout=60)
    assert group.id == bulk.group_id and group.name is None
    assert group.counts.total == 5 and group.counts.succeeded == 5 and group.counts.held == 0
    assert group.credits_ == 5 and group.completed_at is not None
    lines = list(client.groups.results(bulk.group_id))
    assert [line.id for line in lines] == sorted(bulk.ids, key=str)  # id order
    assert all(line.state is JobState.SUCCEEDED and line.credits_ == 1 for line in lines)
    assert all(line.metadata == {"batch": tag} for line in lines)
    assert all(line.result.to_dict()["model"] == "flux-schnell" for line in lines)
    assert client.jobs.get(bulk.ids[3]).group_id == bulk.group_id


def test_bulk_with_a_key_replays_and_refuses_another_body(client, tag, held_tz):
    inputs = [{"prompt": f"keyed bulk {i} {tag}"} for i in range(2)]
    key = f"nightly-{tag}"
    first = client.jobs.bulk("flux-schnell", inputs, timezone=held_tz, idempotency_key=key)
    unkeyed = client.jobs.bulk("flux-schnell", inputs, timezone=held_tz)
    try:
        assert unkeyed.group_id != first.group_id  # each call had its own random key
        replay = client.jobs.bulk("flux-schnell", inputs, timezone=held_tz, idempotency_key=key)
        assert replay.ids == first.ids and replay.group_id == first.group_id
        with pytest.raises(ConflictError) as raised:
            client.jobs.bulk("flux-schnell", inputs[:1], timezone=held_tz, idempotency_key=key)
        assert raised.value.code == "idempotency_conflict"
    finally:
        cancel_quietly(client, *first.ids, *unkeyed.ids)


def test_list_one_page_and_iterate_across_pages(client, tag, held_tz):
    bulk = client.jobs.bulk("flux-dev", [{"prompt": f"page {i} {tag}"} for i in range(7)], timezone=held_tz)
    mine = {str(id) for id in bulk.ids}
    pages = []
    client.http.event_hooks["request"].append(lambda request: pages.append(request.url))
    try:
        page = client.jobs.list(state="held", model="flux-dev", limit=3)
        assert len(page.jobs) == 3 and page.next_cursor
        pages.clear()
        seen = list(client.jobs.iterate(state=JobState.HELD, model="flux-dev", limit=3))
        ids = [str(job.id) for job in seen]
        assert mine <= set(ids)
        assert len(ids) == len(set(ids)), "no job twice"
        assert all(job.state is JobState.HELD and job.model == "flux-dev" for job in seen)
        assert [job.created_at for job in seen] == sorted((job.created_at for job in seen), reverse=True)
        assert len(pages) >= 3 and all(url.params["limit"] == "3" for url in pages)
        assert "cursor" not in pages[0].params and all("cursor" in url.params for url in pages[1:])
    finally:
        client.http.event_hooks["request"].clear()
        cancel_quietly(client, *bulk.ids)
    with pytest.raises(BadRequestError) as raised:
        client.jobs.list(cursor="not-a-cursor")
    assert raised.value.code == "invalid_cursor"


def test_cancel_a_held_job_then_409_once_finished(client, tag, held_tz):
    held = client.jobs.submit("flux-schnell", {"prompt": f"to cancel {tag}"}, priority="low", timezone=held_tz)
    assert held.state is JobState.HELD
    cancelled = client.jobs.cancel(held.id)
    assert cancelled.id == held.id and cancelled.state is JobState.CANCELLED
    with pytest.raises(ConflictError) as raised:
        client.jobs.cancel(held.id)
    assert raised.value.code == "not_cancellable"

    done = client.jobs.wait(client.jobs.submit("flux-schnell", {"prompt": f"done {tag}"}, priority="normal").id)
    assert done.state is JobState.SUCCEEDED
    with pytest.raises(ConflictError) as raised:
        client.jobs.cancel(done.id)
    assert raised.value.code == "not_cancellable" and raised.value.status == 409
    with pytest.raises(NotFoundError):
        client.jobs.cancel(str(uuid.uuid4()))


def test_preview_first_then_upgrade_once(client, tag, held_tz):
    preview = client.jobs.submit(
        "auto", {"prompt": f"a teapot {tag}"}, use_case="hero-image", preview={"use_case": "thumbnail"}
    )
    assert preview.model == "flux-schnell" and preview.priority is Priority.NORMAL
    assert preview.upgrade.model == "flux-pro" and preview.upgrade.use_case == "hero-image"
    assert client.jobs.wait(preview.id).state is JobState.SUCCEEDED
    upgraded = client.jobs.upgrade(preview.id)
    made = [upgraded.id]
    try:
        assert upgraded.parent_id == preview.id and upgraded.model == "flux-pro"
        assert upgraded.priority is Priority.LOW
        assert client.jobs.upgrade(preview.id).id == upgraded.id  # a double click makes nothing new
        assert client.jobs.get(preview.id).children == [upgraded.id]
        bigger = client.jobs.upgrade(preview.id, model="flux-dev", input={"width": 2048}, priority="low")
        made.append(bigger.id)
        assert bigger.model == "flux-dev" and bigger.input_.to_dict()["width"] == 2048
        assert bigger.input_.to_dict()["prompt"] == f"a teapot {tag}"
        held = client.jobs.submit("flux-schnell", {"prompt": f"not yet {tag}"}, timezone=held_tz)
        made.append(held.id)
        with pytest.raises(ConflictError) as raised:
            client.jobs.upgrade(held.id, model="flux-pro")
        assert raised.value.code == "not_upgradable"
    finally:
        cancel_quietly(client, *made)


# ------------------------------------------------------------------ usage, tenant, windows, health


def test_usage_and_tenant(client, tag):
    user = f"user-{tag}"
    job = client.jobs.wait(
        client.jobs.submit("flux-schnell", {"prompt": f"usage {tag}"}, priority="normal", user_id=user).id
    )
    assert job.state is JobState.SUCCEEDED
    by_user = client.usage.get(group_by="user")
    assert by_user.group_by == "user" and by_user.timezone == "UTC"
    assert by_user.groups[user].requests == 1 and by_user.groups[user].credits_ == 1
    today = datetime.datetime.now(UTC).date()
    by_model = client.usage.get(start=today, end=today, group_by=UsageGroupBy.MODEL)
    assert by_model.groups["flux-schnell"].requests >= 1
    assert by_model.totals.credits_ >= by_model.groups["flux-schnell"].credits_
    assert by_model.start == datetime.datetime.combine(today, datetime.time(), UTC)
    with pytest.raises(BadRequestError) as raised:
        client.usage.get(start="yesterday-ish")
    assert raised.value.code == "invalid_query" and raised.value.field == "start"

    tenant = client.tenant.get()
    assert tenant.timezone == "UTC" and tenant.window == "02:00-06:00"
    assert tenant.quota.used >= 1 and tenant.today.requests >= 1
    assert tenant.today.date == today.isoformat()


def test_windows_next_follows_daylight_saving(client):
    berlin = client.windows.next(timezone="Europe/Berlin", at="2027-10-30T12:00:00Z")  # falls back inside
    assert berlin.opens_at == datetime.datetime(2027, 10, 31, 0, 0, tzinfo=UTC)
    assert berlin.closes_at == datetime.datetime(2027, 10, 31, 5, 0, tzinfo=UTC)
    assert berlin.duration_seconds == 5 * 3600 and berlin.open_now is False
    new_york = client.windows.next(timezone="America/New_York", at=datetime.datetime(2027, 3, 13, 12, tzinfo=UTC))
    assert new_york.opens_at == datetime.datetime(2027, 3, 14, 7, 0, tzinfo=UTC)  # 03:00 EDT
    assert new_york.duration_seconds == 3 * 3600
    assert client.windows.next().timezone == "UTC"  # the tenant's, now
    with pytest.raises(UnprocessableEntityError) as raised:
        client.windows.next(timezone="Mars/Olympus")
    assert raised.value.code == "invalid_timezone"


def test_health_readiness_metrics_and_document(client):
    assert client.health.check().status.value == "ok"
    ready = client.health.ready()
    assert ready.status.value == "ready" and ready.checks.postgres and ready.checks.rabbitmq
    assert "offpeak_" in client.health.metrics()
    document = client.openapi()
    assert document["openapi"].startswith("3.1")
    assert "/v1/jobs" in document["paths"]


# ------------------------------------------------------------------ schedules


def test_schedules_crud(client, tag):
    name = f"nightly-{tag}"
    template = {"model": "flux-schnell", "input": {"prompt": f"nightly {tag}"}, "metadata": {"tag": tag}}
    schedule = client.schedules.create(name, "0 3 * * *", template, timezone="America/New_York", catch_up="none")
    try:
        assert schedule.name == name and schedule.cron == "0 3 * * *"
        assert schedule.timezone == "America/New_York" and schedule.catch_up is CatchUp.NONE
        assert schedule.job.model == "flux-schnell" and schedule.job.priority is Priority.LOW
        assert len(schedule.next_fire_times) >= 1
        assert schedule.next_fire_times[0].local[11:19] == "03:00:00"
        assert client.schedules.create(
            name, "0 3 * * *", template, timezone="America/New_York", catch_up="none"
        ).id == (schedule.id)
        with pytest.raises(ConflictError) as raised:
            client.schedules.create(name, "0 4 * * *", template)
        assert raised.value.code == "schedule_conflict" and raised.value.field == "name"

        got = client.schedules.get(schedule.id)
        assert got.id == schedule.id and got.recent_firings == []
        assert len(client.schedules.list(limit=1).schedules) == 1
        assert schedule.id in [s.id for s in client.schedules.iterate(limit=1)]

        paused = client.schedules.update(schedule.id, paused=True, cron="30 4 * * *")
        assert paused.paused is True and paused.cron == "30 4 * * *" and paused.next_fire_at is None
        retemplated = client.schedules.update(
            schedule.id,
            paused=False,
            job=JobTemplateRequest.from_dict({"model": "flux-dev", "input": {"prompt": f"v2 {tag}"}, "cache": False}),
        )
        assert retemplated.job.model == "flux-dev" and retemplated.job.cache is False
        assert retemplated.next_fire_at is not None
        with pytest.raises(UnprocessableEntityError) as raised:
            client.schedules.update(schedule.id, cron="not a cron")
        assert raised.value.code == "invalid_cron"
    finally:
        deleted = client.schedules.delete(schedule.id)
    assert deleted.id == schedule.id
    with pytest.raises(NotFoundError):
        client.schedules.get(schedule.id)


# ------------------------------------------------------------------ webhooks


def test_webhooks_crud_rotate_and_deliveries(client, tag):
    hook = client.webhooks.create(
        "http://127.0.0.1:9/hooks", events=["job.failed", WebhookEventName.GROUP_COMPLETED], description=f"crud {tag}"
    )
    try:
        assert hook.secret.startswith("whsec_") and len(base64.b64decode(hook.secret[6:])) == 32
        assert hook.events == [WebhookEventName.JOB_FAILED, WebhookEventName.GROUP_COMPLETED]
        assert hook.enabled is True and hook.description == f"crud {tag}"
        got = client.webhooks.get(hook.id)
        assert got.url == hook.url and not hasattr(got, "secret")
        assert hook.id in [w.id for w in client.webhooks.list().webhooks]

        changed = client.webhooks.update(hook.id, events="job.succeeded", description=None, enabled=False)
        assert changed.events == [WebhookEventName.JOB_SUCCEEDED]
        assert changed.description is None and changed.enabled is False
        rotated = client.webhooks.rotate_secret(hook.id)
        assert rotated.id == hook.id and rotated.secret.startswith("whsec_") and rotated.secret != hook.secret
        assert rotated.previous_secret_expires_at > datetime.datetime.now(UTC) + datetime.timedelta(hours=23)

        page = client.webhooks.deliveries(hook.id, limit=10)
        assert page.deliveries == [] and page.next_cursor is None
        assert list(client.webhooks.iterate_deliveries(hook.id)) == []
        with pytest.raises(NotFoundError):
            client.webhooks.replay(hook.id, str(uuid.uuid4()))
        with pytest.raises(UnprocessableEntityError) as raised:
            client.webhooks.update(hook.id, url="ftp://example.com/hook")
        assert raised.value.code == "invalid_url" and raised.value.field == "url"
    finally:
        deleted = client.webhooks.delete(hook.id)
    assert deleted.id == hook.id
    with pytest.raises(NotFoundError):
        client.webhooks.get(hook.id)


def test_tonights_thumbnails_and_a_webhook_when_the_group_completes(client, tag, receiver):
    """The README's story: register an endpoint for group.completed, submit a group of
    thumbnails, get told when it completes, check the delivery, then read every result."""
    hook = client.webhooks.create(receiver.url, events=["group.completed"], description=f"thumbnails {tag}")
    try:
        group_name = f"thumbs-{tag}"
        jobs = [
            client.jobs.submit(
                "flux-schnell",
                {"prompt": f"thumbnail of sku {sku} {tag}", "width": 256, "height": 256},
                priority="normal",
                group=group_name,
                metadata={"sku": sku},
            )
            for sku in range(3)
        ]
        group_id = jobs[0].group_id
        assert group_id is not None and all(job.group_id == group_id for job in jobs)

        headers, body = next_event(receiver, lambda event, _: event.get("data", {}).get("id") == str(group_id))
        event = verify_webhook(hook.secret, headers, body)
        assert event["type"] == "group.completed"
        assert event["data"]["name"] == group_name
        assert event["data"]["counts"]["succeeded"] == 3 and event["data"]["counts"]["total"] == 3
        assert event["data"]["credits"] == 3
        assert headers["Webhook-Id"].startswith("msg_")

        # What a receiver must refuse.
        with pytest.raises(WebhookVerificationError):
            verify_webhook(hook.secret, headers, body.replace(tag.encode(), b"x" * len(tag)))
        with pytest.raises(WebhookVerificationError):
            verify_webhook(hook.secret, headers, body + b" ")
        with pytest.raises(WebhookVerificationError, match="too old"):
            verify_webhook(hook.secret, headers, body, now=int(headers["webhook-timestamp"]) + 301)
        with pytest.raises(WebhookVerificationError):
            verify_webhook("whsec_" + base64.b64encode(os.urandom(32)).decode(), headers, body)

        group = client.groups.get(group_id)
        assert group.name == group_name and group.completed_at is not None and group.counts.succeeded == 3
        results = list(client.groups.results(group_id))
        assert sorted(line.metadata["sku"] for line in results) == [0, 1, 2]
        assert all(line.state is JobState.SUCCEEDED and line.result.to_dict()["width"] for line in results)

        # The delivery as the API lists it, replayed after rotating the secret: the same
        # webhook-id and body, signed with both the new and the previous secret.
        delivery = None
        deadline = time.monotonic() + 30
        while delivery is None or delivery.state != "delivered":
            assert time.monotonic() < deadline, "the delivery was never marked delivered"
            time.sleep(0.2)
            delivery = next(
                (
                    d
                    for d in client.webhooks.iterate_deliveries(hook.id, limit=5)
                    if f"msg_{d.event_id.hex}" == headers["webhook-id"]
                ),
                None,
            )
        assert delivery.event_type is WebhookEventName.GROUP_COMPLETED
        assert delivery.attempts >= 1 and delivery.attempt_log[-1].status == 204
        rotated = client.webhooks.rotate_secret(hook.id)
        replay = client.webhooks.replay(hook.id, delivery.id)
        assert replay.id == delivery.id
        again_headers, again_body = next_event(receiver, lambda _, h: h["webhook-id"] == headers["webhook-id"])
        assert again_body == body
        assert len(again_headers["webhook-signature"].split()) == 2
        assert verify_webhook(rotated.secret, again_headers, again_body) == event
        assert verify_webhook(hook.secret, again_headers, again_body) == event
    finally:
        client.webhooks.delete(hook.id)


# ------------------------------------------------------------------ isolation and quota


def test_another_tenant_sees_none_of_it(client, rival, tag, held_tz):
    job = client.jobs.submit("flux-schnell", {"prompt": f"private {tag}"}, timezone=held_tz)
    bulk = client.jobs.bulk("flux-schnell", [{"prompt": f"private bulk {tag}"}], timezone=held_tz)
    schedule = client.schedules.create(f"private-{tag}", "0 3 * * *", {"model": "flux-schnell", "input": {"p": tag}})
    hook = client.webhooks.create("http://127.0.0.1:9/private", events=["job.failed"])
    try:
        attempts = {
            "jobs.get": lambda: rival.jobs.get(job.id),
            "jobs.cancel": lambda: rival.jobs.cancel(job.id),
            "jobs.upgrade": lambda: rival.jobs.upgrade(job.id, model="flux-pro"),
            "groups.get": lambda: rival.groups.get(bulk.group_id),
            "groups.results": lambda: list(rival.groups.results(bulk.group_id)),
            "schedules.get": lambda: rival.schedules.get(schedule.id),
            "schedules.update": lambda: rival.schedules.update(schedule.id, paused=True),
            "schedules.delete": lambda: rival.schedules.delete(schedule.id),
            "webhooks.get": lambda: rival.webhooks.get(hook.id),
            "webhooks.update": lambda: rival.webhooks.update(hook.id, enabled=False),
            "webhooks.rotate_secret": lambda: rival.webhooks.rotate_secret(hook.id),
            "webhooks.deliveries": lambda: rival.webhooks.deliveries(hook.id),
            "webhooks.delete": lambda: rival.webhooks.delete(hook.id),
        }
        for name, attempt in attempts.items():
            with pytest.raises(NotFoundError, match="not_found"):
                attempt()
                pytest.fail(f"{name} answered the rival tenant")
        assert job.id not in {j.id for j in rival.jobs.iterate(limit=1000)}
        assert schedule.id not in {s.id for s in rival.schedules.iterate(limit=1000)}
        assert hook.id not in {w.id for w in rival.webhooks.list().webhooks}
        assert f"private {tag}" not in str(rival.usage.get(group_by="user").to_dict())
        # ... and nothing of it changed.
        assert client.jobs.get(job.id).state is JobState.HELD
        assert client.schedules.get(schedule.id).paused is False
        assert client.webhooks.get(hook.id).enabled is True
    finally:
        cancel_quietly(client, job.id, *bulk.ids)
        client.schedules.delete(schedule.id)
        client.webhooks.delete(hook.id)


def test_over_the_daily_limit_fails_fast_with_a_typed_error(frugal, tag):
    tenant = frugal.tenant.get()
    assert tenant.daily_credits == 10
    for i in range(tenant.quota.remaining // 5):  # flux-pro costs 5: two fit in a fresh day
        frugal.jobs.submit("flux-pro", {"prompt": f"hero {i} {tag}"}, priority="normal")
    used = frugal.tenant.get().quota.used
    started = time.monotonic()
    with pytest.raises(QuotaExceededError) as raised:
        frugal.jobs.submit("flux-pro", {"prompt": f"one too many {tag}"}, priority="normal")
    elapsed = time.monotonic() - started
    error = raised.value
    assert elapsed < 2, f"a Retry-After of {error.retry_after} s was waited for"
    assert isinstance(error, RateLimitError)
    assert error.status == 429 and error.code == "quota_exceeded"
    assert error.retry_after is not None and error.retry_after > 30
    assert error.details["scope"] == "tenant" and error.details["limit"] == 10
    assert error.details["requested"] == 5
    assert "10" in error.message
    assert frugal.tenant.get().quota.used == used  # nothing stored
    assert f"one too many {tag}" not in str([j.input_.to_dict() for j in frugal.jobs.iterate(limit=1000)])

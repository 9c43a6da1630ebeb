"""``Offpeak`` (sync) and ``AsyncOffpeak`` (async): the hand-written layer over the generated code."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Self

import httpx

from . import _ops
from ._generated.client import AuthenticatedClient
from ._generated.models import (
    BulkResponse,
    CatchUp,
    DeliveryList,
    DeliveryView,
    GroupView,
    Health,
    JobState,
    JobTemplateRequest,
    JobView,
    ListResponse,
    NextWindow,
    PreviewRequest,
    Priority,
    Readiness,
    ResultLine,
    Schedule,
    ScheduleList,
    SecretRotated,
    TenantView,
    UsageGroupBy,
    UsageResponse,
    WebhookCreated,
    WebhookEventName,
    WebhookList,
    WebhookView,
)
from ._generated.types import UNSET, Unset
from ._version import __version__
from .errors import error_from_response
from .retry import AsyncRetryTransport, RetryPolicy, RetryTransport

__all__ = ["DEFAULT_BASE_URL", "AsyncOffpeak", "Offpeak"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"

Id = uuid.UUID | str
"""An object's id: a UUID or its string."""


def _settings(
    api_key: str | None,
    base_url: str | httpx.URL | None,
    retry: RetryPolicy | None,
    max_attempts: int | None,
    max_retry_wait: float | None,
    headers: Mapping[str, str] | None,
) -> tuple[str, str, RetryPolicy, dict[str, str]]:
    key = api_key if api_key is not None else os.environ.get("OFFPEAK_API_KEY")
    if not key:
        raise ValueError("an API key is needed: pass api_key= or set OFFPEAK_API_KEY")
    url = str(base_url or os.environ.get("OFFPEAK_URL") or DEFAULT_BASE_URL).rstrip("/")
    policy = retry if retry is not None else RetryPolicy()
    if max_attempts is not None:
        policy = dataclasses.replace(policy, max_attempts=max_attempts)
    if max_retry_wait is not None:
        policy = dataclasses.replace(policy, max_wait=max_retry_wait)
    all_headers = {
        "User-Agent": f"offpeak-client-python/{__version__}",
        **(headers or {}),
        "Authorization": f"Bearer {key}",
    }
    return key, url, policy, all_headers


def _uuid_or_unset(value: Id | None | Unset) -> Any:
    return UNSET if value is None else value


# ============================================================================ sync


class Offpeak:
    """The offpeak API, synchronously.

    Args:
        api_key: the tenant's API key (``op_...``); ``$OFFPEAK_API_KEY`` by default.
        base_url: the scheduler's URL; ``$OFFPEAK_URL``, else ``http://127.0.0.1:8080``.
        timeout: seconds per request (an httpx timeout).
        max_attempts: attempts per request in all, retries included (default 4).
        max_retry_wait: the longest ``Retry-After`` waited for (default 30 s); a longer one
            (e.g. a ``quota_exceeded`` until the day resets) is raised at once.
        retry: a whole :class:`RetryPolicy` instead of the two settings above.
        headers: extra headers on every request.
        transport: the httpx transport under the retry layer (tests, proxies).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        max_attempts: int | None = None,
        max_retry_wait: float | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key, url, policy, all_headers = _settings(api_key, base_url, retry, max_attempts, max_retry_wait, headers)
        self.base_url = url
        self.retry = policy
        self.http = httpx.Client(
            base_url=url,
            headers=all_headers,
            timeout=timeout,
            transport=RetryTransport(transport, policy),
        )
        #: The generated client, sharing this client's httpx client (key, retries): for
        #: calling the generated ``offpeak_client._generated.api`` functions directly.
        self.generated = AuthenticatedClient(base_url=url, token=key)
        self.generated.set_httpx_client(self.http)
        self.jobs = Jobs(self)
        self.schedules = Schedules(self)
        self.groups = Groups(self)
        self.webhooks = Webhooks(self)
        self.windows = Windows(self)
        self.usage = Usage(self)
        self.tenant = Tenant(self)
        self.health = HealthChecks(self)

    def _send(self, op: _ops.Op) -> Any:
        response = self.http.request(**op.request_kwargs())
        return _ops.parse(op, self.generated, response)

    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI document (``GET /openapi.json``)."""
        return self._send(_ops.openapi_op()).to_dict()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Namespace:
    def __init__(self, client: Offpeak) -> None:
        self._c = client


class Jobs(_Namespace):
    """``/v1/jobs``."""

    def submit(
        self,
        model: str,
        input: Mapping[str, Any],
        *,
        priority: Priority | str | Unset = UNSET,
        timezone: str | None | Unset = UNSET,
        user_id: str | None | Unset = UNSET,
        metadata: Any | Unset = UNSET,
        group: str | None | Unset = UNSET,
        cache: bool | str | Unset = UNSET,
        use_case: str | None | Unset = UNSET,
        preview: PreviewRequest | Mapping[str, Any] | Unset = UNSET,
        idempotency_key: str | None = None,
    ) -> JobView:
        """Submit one job (``POST /v1/jobs``).

        An ``Idempotency-Key`` is always sent: ``idempotency_key``, or a random UUID made
        for this call and kept across its retries. The same key and body again returns the
        original job; the same key with another body raises a 409 ``idempotency_conflict``.
        """
        return self._c._send(
            _ops.submit(
                model=model,
                input=input,
                priority=priority,
                timezone=timezone,
                user_id=user_id,
                metadata=metadata,
                group=group,
                cache=cache,
                use_case=use_case,
                preview=preview,
                idempotency_key=idempotency_key,
            )
        )

    def bulk(
        self,
        model: str,
        inputs: Iterable[Mapping[str, Any]],
        *,
        priority: Priority | str | Unset = UNSET,
        timezone: str | None | Unset = UNSET,
        user_id: str | None | Unset = UNSET,
        metadata: Any | Unset = UNSET,
        cache: bool | str | Unset = UNSET,
        use_case: str | None | Unset = UNSET,
        preview: PreviewRequest | Mapping[str, Any] | Unset = UNSET,
        idempotency_key: str | None = None,
    ) -> BulkResponse:
        """Submit many inputs of one model, all or none, as one group (``POST /v1/jobs/bulk``).

        An ``Idempotency-Key`` is always sent, as for :meth:`submit`: the same key and body
        again answers the original jobs; another body under the key raises a 409.
        """
        return self._c._send(
            _ops.bulk(
                model=model,
                inputs=inputs,
                priority=priority,
                timezone=timezone,
                user_id=user_id,
                metadata=metadata,
                cache=cache,
                use_case=use_case,
                preview=preview,
                idempotency_key=idempotency_key,
            )
        )

    def get(self, id: Id) -> JobView:
        """One job (``GET /v1/jobs/{id}``)."""
        return self._c._send(_ops.get_job_op(id))

    def list(
        self,
        *,
        state: JobState | str | Unset = UNSET,
        model: str | Unset = UNSET,
        limit: int | Unset = UNSET,
        cursor: Id | None | Unset = UNSET,
    ) -> ListResponse:
        """One page of the tenant's jobs, newest first (``GET /v1/jobs``); pass its
        ``next_cursor`` as ``cursor`` for the next. :meth:`iterate` does that for you."""
        return self._c._send(_ops.list_jobs_op(state=state, model=model, limit=limit, cursor=_uuid_or_unset(cursor)))

    def iterate(
        self,
        *,
        state: JobState | str | Unset = UNSET,
        model: str | Unset = UNSET,
        limit: int | Unset = UNSET,
    ) -> Iterator[JobView]:
        """Every job matching, newest first, fetched a page (``limit`` jobs) at a time."""
        cursor: Any = UNSET
        while True:
            page = self.list(state=state, model=model, limit=limit, cursor=cursor)
            yield from page.jobs
            if not page.jobs or not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, id: Id) -> JobView:
        """Cancel a job that has not started (``DELETE /v1/jobs/{id}``); a 409
        ``not_cancellable`` once a worker has started it or it has finished."""
        return self._c._send(_ops.cancel(id))

    def upgrade(
        self,
        id: Id,
        *,
        model: str | None | Unset = UNSET,
        input: Mapping[str, Any] | None | Unset = UNSET,
        priority: Priority | str | None | Unset = UNSET,
        metadata: Any | Unset = UNSET,
        use_case: str | None | Unset = UNSET,
        idempotency_key: str | None = None,
    ) -> JobView:
        """Make the full-quality job of a succeeded job (``POST /v1/jobs/{id}/upgrade``).

        Without arguments, a preview's recorded target. Asking again for the same upgrade
        returns the job it made (the server makes it once). ``idempotency_key`` is sent
        only if the API document accepts one here (it does not in this version).
        """
        return self._c._send(
            _ops.upgrade(
                id,
                model=model,
                input=input,
                priority=priority,
                metadata=metadata,
                use_case=use_case,
                idempotency_key=idempotency_key,
            )
        )

    def wait(self, id: Id, *, timeout: float = 60.0, interval: float = 0.25) -> JobView:
        """Poll a job until it is in a terminal state; raises :class:`TimeoutError` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(id)
            if job.state.value in _ops.TERMINAL_STATES:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {id} still {job.state.value} after {timeout} s")
            time.sleep(interval)


class Schedules(_Namespace):
    """``/v1/schedules``: recurring jobs."""

    def create(
        self,
        name: str,
        cron: str,
        job: JobTemplateRequest | Mapping[str, Any],
        *,
        timezone: str | None | Unset = UNSET,
        catch_up: CatchUp | str | Unset = UNSET,
        paused: bool | Unset = UNSET,
    ) -> Schedule:
        """Register a schedule; the same name and definition again returns that schedule."""
        return self._c._send(
            _ops.create_schedule_op(name=name, cron=cron, job=job, timezone=timezone, catch_up=catch_up, paused=paused)
        )

    def list(self, *, limit: int | Unset = UNSET, cursor: Id | None | Unset = UNSET) -> ScheduleList:
        """One page of schedules, newest first."""
        return self._c._send(_ops.list_schedules_op(limit=limit, cursor=_uuid_or_unset(cursor)))

    def iterate(self, *, limit: int | Unset = UNSET) -> Iterator[Schedule]:
        """Every schedule, a page at a time."""
        cursor: Any = UNSET
        while True:
            page = self.list(limit=limit, cursor=cursor)
            yield from page.schedules
            if not page.schedules or not page.next_cursor:
                return
            cursor = page.next_cursor

    def get(self, id: Id) -> Schedule:
        """One schedule, with its next fire times and recent firings."""
        return self._c._send(_ops.get_schedule_op(id))

    def update(
        self,
        id: Id,
        *,
        cron: str | None | Unset = UNSET,
        timezone: str | None | Unset = UNSET,
        catch_up: CatchUp | str | None | Unset = UNSET,
        paused: bool | None | Unset = UNSET,
        job: JobTemplateRequest | Mapping[str, Any] | Unset = UNSET,
    ) -> Schedule:
        """Change a schedule (``PATCH``): only the arguments given; ``job`` replaces the template."""
        return self._c._send(
            _ops.update_schedule_op(id, cron=cron, timezone=timezone, catch_up=catch_up, paused=paused, job=job)
        )

    def delete(self, id: Id) -> Schedule:
        """Delete a schedule; returns it as it was."""
        return self._c._send(_ops.delete_schedule_op(id))


class Groups(_Namespace):
    """``/v1/groups``: the jobs of a bulk submission, or of single submissions naming a ``group``."""

    def get(self, id: Id) -> GroupView:
        """A group's jobs counted by state, its credits, and when it completed."""
        return self._c._send(_ops.get_group_op(id))

    def results(self, id: Id) -> Iterator[ResultLine]:
        """Every job of a group, one :class:`ResultLine` at a time, parsed as the JSON Lines
        body streams in (``GET /v1/groups/{id}/results``): never the whole body in memory.

        The request is made when iteration starts (an unknown group raises
        :class:`NotFoundError` then). A body cut inside a line raises
        :class:`TruncatedStreamError`. Leaving the loop early closes the connection.
        """
        with self._c.http.stream(**_ops.group_results_request(id)) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from_response(response)
            lines = _ops.JsonLines(response)
            for chunk in response.iter_bytes():
                yield from lines.feed(chunk)
            lines.finish()

    def wait(self, id: Id, *, timeout: float = 60.0, interval: float = 0.25) -> GroupView:
        """Poll a group until it has completed (``completed_at`` set)."""
        deadline = time.monotonic() + timeout
        while True:
            group = self.get(id)
            if group.completed_at is not None:
                return group
            if time.monotonic() >= deadline:
                raise TimeoutError(f"group {id} not completed after {timeout} s")
            time.sleep(interval)


class Webhooks(_Namespace):
    """``/v1/webhooks``: endpoints offpeak POSTs signed events to (see :func:`verify_webhook`)."""

    def create(
        self,
        url: str,
        *,
        events: Iterable[WebhookEventName | str] | None | Unset = UNSET,
        description: str | None | Unset = UNSET,
    ) -> WebhookCreated:
        """Register an endpoint; the answer's ``secret`` (``whsec_...``) is shown only here."""
        return self._c._send(_ops.create_webhook_op(url=url, events=_ops.events_list(events), description=description))

    def list(self) -> WebhookList:
        """Every endpoint of the tenant (at most 20), oldest first."""
        return self._c._send(_ops.list_webhooks_op())

    def get(self, id: Id) -> WebhookView:
        return self._c._send(_ops.get_webhook_op(id))

    def update(
        self,
        id: Id,
        *,
        url: str | None | Unset = UNSET,
        events: Iterable[WebhookEventName | str] | None | Unset = UNSET,
        description: str | None | Unset = UNSET,
        enabled: bool | None | Unset = UNSET,
    ) -> WebhookView:
        """Change an endpoint: only the arguments given (``description=None`` clears it)."""
        return self._c._send(
            _ops.update_webhook_op(
                id,
                url=url,
                events=_ops.events_list(events),
                description=description,
                enabled=enabled,
            )
        )

    def delete(self, id: Id) -> WebhookView:
        """Delete an endpoint and its pending deliveries; returns it as it was."""
        return self._c._send(_ops.delete_webhook_op(id))

    def rotate_secret(self, id: Id) -> SecretRotated:
        """A new secret; the previous one keeps signing beside it for 24 hours."""
        return self._c._send(_ops.rotate_secret_op(id))

    def deliveries(self, id: Id, *, limit: int | Unset = UNSET, cursor: Id | None | Unset = UNSET) -> DeliveryList:
        """One page of an endpoint's deliveries, newest first."""
        return self._c._send(_ops.deliveries_op(id, limit=limit, cursor=_uuid_or_unset(cursor)))

    def iterate_deliveries(self, id: Id, *, limit: int | Unset = UNSET) -> Iterator[DeliveryView]:
        """Every delivery of an endpoint, a page at a time."""
        cursor: Any = UNSET
        while True:
            page = self.deliveries(id, limit=limit, cursor=cursor)
            yield from page.deliveries
            if not page.deliveries or not page.next_cursor:
                return
            cursor = page.next_cursor

    def replay(self, id: Id, delivery_id: Id) -> DeliveryView:
        """Send a delivery again (same ``webhook-id``, same body)."""
        return self._c._send(_ops.replay_op(id, delivery_id))


class Windows(_Namespace):
    def next(
        self,
        *,
        timezone: str | Unset = UNSET,
        at: datetime.datetime | str | Unset = UNSET,
    ) -> NextWindow:
        """When a low-priority job submitted at ``at`` (default now) in ``timezone``
        (default the tenant's) would run: the window's ``opens_at`` and ``closes_at``."""
        return self._c._send(_ops.next_window_op(timezone=timezone, at=at))


class Usage(_Namespace):
    def get(
        self,
        *,
        start: datetime.date | datetime.datetime | str | Unset = UNSET,
        end: datetime.date | datetime.datetime | str | Unset = UNSET,
        group_by: UsageGroupBy | str | Unset = UNSET,
    ) -> UsageResponse:
        """Requests and credits per model, day or user; dates are the tenant's days (an
        ``end`` day is included), datetimes are instants; default: today."""
        return self._c._send(_ops.usage_op(start=start, end=end, group_by=group_by))


class Tenant(_Namespace):
    def get(self) -> TenantView:
        """The tenant's settings, quota and today's usage."""
        return self._c._send(_ops.tenant_op())


class HealthChecks(_Namespace):
    def check(self) -> Health:
        """``GET /healthz``: the process is up."""
        return self._c._send(_ops.healthz_op())

    def ready(self) -> Readiness:
        """``GET /readyz``: whether PostgreSQL and RabbitMQ are reachable (a 503 is an
        answer here, not an error: ``status`` is ``not_ready`` and ``checks`` says which)."""
        return self._c._send(_ops.readyz_op())

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        return self._c._send(_ops.metrics_op())


# ============================================================================ async


class AsyncOffpeak:
    """The offpeak API, with ``async``/``await``; the same arguments and methods as :class:`Offpeak`.

    Use it as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        max_attempts: int | None = None,
        max_retry_wait: float | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key, url, policy, all_headers = _settings(api_key, base_url, retry, max_attempts, max_retry_wait, headers)
        self.base_url = url
        self.retry = policy
        self.http = httpx.AsyncClient(
            base_url=url,
            headers=all_headers,
            timeout=timeout,
            transport=AsyncRetryTransport(transport, policy),
        )
        self.generated = AuthenticatedClient(base_url=url, token=key)
        self.generated.set_async_httpx_client(self.http)
        self.jobs = AsyncJobs(self)
        self.schedules = AsyncSchedules(self)
        self.groups = AsyncGroups(self)
        self.webhooks = AsyncWebhooks(self)
        self.windows = AsyncWindows(self)
        self.usage = AsyncUsage(self)
        self.tenant = AsyncTenant(self)
        self.health = AsyncHealthChecks(self)

    async def _send(self, op: _ops.Op) -> Any:
        response = await self.http.request(**op.request_kwargs())
        return _ops.parse(op, self.generated, response)

    async def openapi(self) -> dict[str, Any]:
        return (await self._send(_ops.openapi_op())).to_dict()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _AsyncNamespace:
    def __init__(self, client: AsyncOffpeak) -> None:
        self._c = client


class AsyncJobs(_AsyncNamespace):
    async def submit(
        self,
        model: str,
        input: Mapping[str, Any],
        *,
        priority: Priority | str | Unset = UNSET,
        timezone: str | None | Unset = UNSET,
        user_id: str | None | Unset = UNSET,
        metadata: Any | Unset = UNSET,
        group: str | None | Unset = UNSET,
        cache: bool | str | Unset = UNSET,
        use_case: str | None | Unset = UNSET,
        preview: PreviewRequest | Mapping[str, Any] | Unset = UNSET,
        idempotency_key: str | None = None,
    ) -> JobView:
        return await self._c._send(
            _ops.submit(
                model=model,
                input=input,
                priority=priority,
                timezone=timezone,
                user_id=user_id,
                metadata=metadata,
                group=group,
                cache=cache,
                use_case=use_case,
                preview=preview,
                idempotency_key=idempotency_key,
            )
        )

    async def bulk(
        self,
        model: str,
        inputs: Iterable[Mapping[str, Any]],
        *,
        priority: Priority | str | Unset = UNSET,
        timezone: str | None | Unset = UNSET,
        user_id: str | None | Unset = UNSET,
        metadata: Any | Unset = UNSET,
        cache: bool | str | Unset = UNSET,
        use_case: str | None | Unset = UNSET,
        preview: PreviewRequest | Mapping[str, Any] | Unset = UNSET,
        idempotency_key: str | None = None,
    ) -> BulkResponse:
        return await self._c._send(
            _ops.bulk(
                model=model,
                inputs=inputs,
                priority=priority,
                timezone=timezone,
                user_id=user_id,
                metadata=metadata,
                cache=cache,
                use_case=use_case,
                preview=preview,
                idempotency_key=idempotency_key,
            )
        )

    async def get(self, id: Id) -> JobView:
        return await self._c._send(_ops.get_job_op(id))

    async def list(
        self,
        *,
        state: JobState | str | Unset = UNSET,
        model: str | Unset = UNSET,
        limit: int | Unset = UNSET,
        cursor: Id | None | Unset = UNSET,
    ) -> ListResponse:
        return await self._c._send(
            _ops.list_jobs_op(state=state, model=model, limit=limit, cursor=_uuid_or_unset(cursor))
        )

    async def iterate(
        self,
        *,
        state: JobState | str | Unset = UNSET,
        model: str | Unset = UNSET,
        limit: int | Unset = UNSET,
    ) -> AsyncIterator[JobView]:
        cursor: Any = UNSET
        while True:
            page = await self.list(state=state, model=model, limit=limit, cursor=cursor)
            for job in page.jobs:
                yield job
            if not page.jobs or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def cancel(self, id: Id) -> JobView:
        return await self._c._send(_ops.cancel(id))

    async def upgrade(
        self,
        id: Id,
        *,
        model: str | None | Unset = UNSET,
        input: Mapping[str, Any] | None | Unset = UNSET,
        priority: Priority | str | None | Unset = UNSET,
        metadata: Any | Unset = UNSET,
        use_case: str | None | Unset = UNSET,
        idempotency_key: str | None = None,
    ) -> JobView:
        return await self._c._send(
            _ops.upgrade(
                id,
                model=model,
                input=input,
                priority=priority,
                metadata=metadata,
                use_case=use_case,
                idempotency_key=idempotency_key,
            )
        )

    async def wait(self, id: Id, *, timeout: float = 60.0, interval: float = 0.25) -> JobView:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(id)
            if job.state.value in _ops.TERMINAL_STATES:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {id} still {job.state.value} after {timeout} s")
            await asyncio.sleep(interval)


class AsyncSchedules(_AsyncNamespace):
    async def create(
        self,
        name: str,
        cron: str,
        job: JobTemplateRequest | Mapping[str, Any],
        *,
        timezone: str | None | Unset = UNSET,
        catch_up: CatchUp | str | Unset = UNSET,
        paused: bool | Unset = UNSET,
    ) -> Schedule:
        return await self._c._send(
            _ops.create_schedule_op(name=name, cron=cron, job=job, timezone=timezone, catch_up=catch_up, paused=paused)
        )

    async def list(self, *, limit: int | Unset = UNSET, cursor: Id | None | Unset = UNSET) -> ScheduleList:
        return await self._c._send(_ops.list_schedules_op(limit=limit, cursor=_uuid_or_unset(cursor)))

    async def iterate(self, *, limit: int | Unset = UNSET) -> AsyncIterator[Schedule]:
        cursor: Any = UNSET
        while True:
            page = await self.list(limit=limit, cursor=cursor)
            for schedule in page.schedules:
                yield schedule
            if not page.schedules or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get(self, id: Id) -> Schedule:
        return await self._c._send(_ops.get_schedule_op(id))

    async def update(
        self,
        id: Id,
        *,
        cron: str | None | Unset = UNSET,
        timezone: str | None | Unset = UNSET,
        catch_up: CatchUp | str | None | Unset = UNSET,
        paused: bool | None | Unset = UNSET,
        job: JobTemplateRequest | Mapping[str, Any] | Unset = UNSET,
    ) -> Schedule:
        return await self._c._send(
            _ops.update_schedule_op(id, cron=cron, timezone=timezone, catch_up=catch_up, paused=paused, job=job)
        )

    async def delete(self, id: Id) -> Schedule:
        return await self._c._send(_ops.delete_schedule_op(id))


class AsyncGroups(_AsyncNamespace):
    async def get(self, id: Id) -> GroupView:
        return await self._c._send(_ops.get_group_op(id))

    async def results(self, id: Id) -> AsyncIterator[ResultLine]:
        """As :meth:`Groups.results`; to leave the loop early and close the connection at
        once, wrap it in ``contextlib.aclosing``."""
        async with self._c.http.stream(**_ops.group_results_request(id)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise error_from_response(response)
            lines = _ops.JsonLines(response)
            async for chunk in response.aiter_bytes():
                for line in lines.feed(chunk):
                    yield line
            lines.finish()

    async def wait(self, id: Id, *, timeout: float = 60.0, interval: float = 0.25) -> GroupView:
        deadline = time.monotonic() + timeout
        while True:
            group = await self.get(id)
            if group.completed_at is not None:
                return group
            if time.monotonic() >= deadline:
                raise TimeoutError(f"group {id} not completed after {timeout} s")
            await asyncio.sleep(interval)


class AsyncWebhooks(_AsyncNamespace):
    async def create(
        self,
        url: str,
        *,
        events: Iterable[WebhookEventName | str] | None | Unset = UNSET,
        description: str | None | Unset = UNSET,
    ) -> WebhookCreated:
        return await self._c._send(
            _ops.create_webhook_op(url=url, events=_ops.events_list(events), description=description)
        )

    async def list(self) -> WebhookList:
        return await self._c._send(_ops.list_webhooks_op())

    async def get(self, id: Id) -> WebhookView:
        return await self._c._send(_ops.get_webhook_op(id))

    async def update(
        self,
        id: Id,
        *,
        url: str | None | Unset = UNSET,
        events: Iterable[WebhookEventName | str] | None | Unset = UNSET,
        description: str | None | Unset = UNSET,
        enabled: bool | None | Unset = UNSET,
    ) -> WebhookView:
        return await self._c._send(
            _ops.update_webhook_op(
                id,
                url=url,
                events=_ops.events_list(events),
                description=description,
                enabled=enabled,
            )
        )

    async def delete(self, id: Id) -> WebhookView:
        return await self._c._send(_ops.delete_webhook_op(id))

    async def rotate_secret(self, id: Id) -> SecretRotated:
        return await self._c._send(_ops.rotate_secret_op(id))

    async def deliveries(
        self, id: Id, *, limit: int | Unset = UNSET, cursor: Id | None | Unset = UNSET
    ) -> DeliveryList:
        return await self._c._send(_ops.deliveries_op(id, limit=limit, cursor=_uuid_or_unset(cursor)))

    async def iterate_deliveries(self, id: Id, *, limit: int | Unset = UNSET) -> AsyncIterator[DeliveryView]:
        cursor: Any = UNSET
        while True:
            page = await self.deliveries(id, limit=limit, cursor=cursor)
            for delivery in page.deliveries:
                yield delivery
            if not page.deliveries or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def replay(self, id: Id, delivery_id: Id) -> DeliveryView:
        return await self._c._send(_ops.replay_op(id, delivery_id))


class AsyncWindows(_AsyncNamespace):
    async def next(
        self,
        *,
        timezone: str | Unset = UNSET,
        at: datetime.datetime | str | Unset = UNSET,
    ) -> NextWindow:
        return await self._c._send(_ops.next_window_op(timezone=timezone, at=at))


class AsyncUsage(_AsyncNamespace):
    async def get(
        self,
        *,
        start: datetime.date | datetime.datetime | str | Unset = UNSET,
        end: datetime.date | datetime.datetime | str | Unset = UNSET,
        group_by: UsageGroupBy | str | Unset = UNSET,
    ) -> UsageResponse:
        return await self._c._send(_ops.usage_op(start=start, end=end, group_by=group_by))


class AsyncTenant(_AsyncNamespace):
    async def get(self) -> TenantView:
        return await self._c._send(_ops.tenant_op())


class AsyncHealthChecks(_AsyncNamespace):
    async def check(self) -> Health:
        return await self._c._send(_ops.healthz_op())

    async def ready(self) -> Readiness:
        return await self._c._send(_ops.readyz_op())

    async def metrics(self) -> str:
        return await self._c._send(_ops.metrics_op())

"""What the sync and async clients share: one function per API operation that turns the
caller's arguments into the generated operation's arguments, and the parsing of answers.

The generated module of each operation (``_generated/api/...``) builds the request
(``_get_kwargs``) and parses a success (``_parse_response``) into the generated attrs
models; the hand-written layer sends the request on its own httpx client (API key, retry
transport) and raises error answers as typed :class:`~offpeak_client.errors.OffpeakError`.
"""

from __future__ import annotations

import datetime
import enum
import functools
import inspect
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

import httpx

from ._generated.api.groups import get_group, get_group_results
from ._generated.api.jobs import (
    cancel_job,
    get_job,
    list_jobs,
    submit_job,
    submit_jobs_bulk,
    upgrade_job,
)
from ._generated.api.operations import healthz, metrics, openapi, readyz
from ._generated.api.schedules import (
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    patch_schedule,
)
from ._generated.api.usage import get_tenant, get_usage
from ._generated.api.webhooks import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhook_deliveries,
    list_webhooks,
    replay_webhook_delivery,
    rotate_webhook_secret,
    update_webhook,
)
from ._generated.api.windows import next_window
from ._generated.client import AuthenticatedClient
from ._generated.models import (
    BulkRequest,
    CreateScheduleRequest,
    CreateWebhook,
    JobState,
    PatchScheduleRequest,
    ResultLine,
    SubmitRequest,
    UpdateWebhook,
    UpgradeRequest,
    UsageGroupBy,
)
from ._generated.types import UNSET, Unset
from .errors import OffpeakError, TruncatedStreamError, error_from_response

TERMINAL_STATES = frozenset({"succeeded", "failed", "dead", "cancelled"})
"""The states a job ends in."""

JSONL = "application/jsonl"

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


@dataclass(frozen=True)
class Op:
    """One call: the generated operation module, its arguments, and the error statuses
    that are answers rather than errors (``/readyz``'s 503)."""

    module: ModuleType
    kwargs: dict[str, Any] = field(default_factory=dict)
    ok: frozenset[int] = frozenset()

    def request_kwargs(self) -> dict[str, Any]:
        return self.module._get_kwargs(**self.kwargs)


def parse(op: Op, generated: AuthenticatedClient, response: httpx.Response) -> Any:
    """The parsed answer of ``op``, or its typed error raised; ``response`` has been read."""
    if response.status_code >= 400 and response.status_code not in op.ok:
        raise error_from_response(response)
    parsed = op.module._parse_response(client=generated, response=response)
    if parsed is None:
        raise OffpeakError(
            status=response.status_code,
            code="unexpected_status",
            message=f"the API document does not describe a {response.status_code} answer here",
            response=response,
        )
    return parsed


# ---------------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    """A value as JSON-ready data: generated models by their ``to_dict``, enums by value."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _body(cls: type[T], **fields: Any) -> T:
    """A generated request model from keyword arguments; UNSET ones are left out."""
    data = {name: _plain(value) for name, value in fields.items() if value is not UNSET}
    return cls.from_dict(data)  # type: ignore[attr-defined,no-any-return]


def _enum(cls: type[E], value: E | str | Unset) -> E | Unset:
    if isinstance(value, (Unset, cls)):
        return value
    return cls(value)


def _instant(value: datetime.datetime | str | Unset) -> datetime.datetime | Unset:
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    return value


def _day_or_instant(value: datetime.date | datetime.datetime | str | Unset) -> str | Unset:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def events_list(events: Any) -> Any:
    """Webhook events as a list (one event name alone is a list of one)."""
    if isinstance(events, (str, Unset)) or events is None:
        return [events] if isinstance(events, str) else events
    return list(events)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


@functools.cache
def takes_idempotency_key(module: ModuleType) -> bool:
    """Whether the document gives this operation an ``Idempotency-Key`` header parameter."""
    return "idempotency_key" in inspect.signature(module._get_kwargs).parameters


def keyed(module: ModuleType, kwargs: dict[str, Any], idempotency_key: str | None) -> Op:
    """A submission, with an ``Idempotency-Key`` wherever the document accepts one: the
    caller's, or a random UUID made for this call (and so the same on its retries)."""
    if takes_idempotency_key(module):
        kwargs["idempotency_key"] = idempotency_key if idempotency_key is not None else new_idempotency_key()
    elif idempotency_key is not None:
        raise TypeError(f"{module.__name__.rsplit('.', 1)[-1]} takes no Idempotency-Key in this API version")
    return Op(module, kwargs)


# ---------------------------------------------------------------------------- jobs


def submit(
    *,
    model: str,
    input: Mapping[str, Any],
    priority: Any,
    timezone: Any,
    user_id: Any,
    metadata: Any,
    group: Any,
    cache: Any,
    use_case: Any,
    preview: Any,
    idempotency_key: str | None,
) -> Op:
    body = _body(
        SubmitRequest,
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
    )
    return keyed(submit_job, {"body": body}, idempotency_key)


def bulk(
    *,
    model: str,
    inputs: Iterable[Mapping[str, Any]],
    priority: Any,
    timezone: Any,
    user_id: Any,
    metadata: Any,
    cache: Any,
    use_case: Any,
    preview: Any,
    idempotency_key: str | None,
) -> Op:
    body = _body(
        BulkRequest,
        model=model,
        inputs=list(inputs),
        priority=priority,
        timezone=timezone,
        user_id=user_id,
        metadata=metadata,
        cache=cache,
        use_case=use_case,
        preview=preview,
    )
    return keyed(submit_jobs_bulk, {"body": body}, idempotency_key)


def get_job_op(id: Any) -> Op:
    return Op(get_job, {"id": id})


def list_jobs_op(*, state: Any, model: Any, limit: Any, cursor: Any) -> Op:
    return Op(
        list_jobs,
        {"state": _enum(JobState, state), "model": model, "limit": limit, "cursor": cursor},
    )


def cancel(id: Any) -> Op:
    return Op(cancel_job, {"id": id})


def upgrade(
    id: Any, *, model: Any, input: Any, priority: Any, metadata: Any, use_case: Any, idempotency_key: str | None
) -> Op:
    body = _body(
        UpgradeRequest,
        model=model,
        input=input,
        priority=priority,
        metadata=metadata,
        use_case=use_case,
    )
    return keyed(upgrade_job, {"id": id, "body": body}, idempotency_key)


# ---------------------------------------------------------------------------- schedules


def create_schedule_op(*, name: str, cron: str, job: Any, timezone: Any, catch_up: Any, paused: Any) -> Op:
    body = _body(
        CreateScheduleRequest,
        name=name,
        cron=cron,
        job=job,
        timezone=timezone,
        catch_up=catch_up,
        paused=paused,
    )
    return Op(create_schedule, {"body": body})


def list_schedules_op(*, limit: Any, cursor: Any) -> Op:
    return Op(list_schedules, {"limit": limit, "cursor": cursor})


def get_schedule_op(id: Any) -> Op:
    return Op(get_schedule, {"id": id})


def update_schedule_op(id: Any, *, cron: Any, timezone: Any, catch_up: Any, paused: Any, job: Any) -> Op:
    body = _body(
        PatchScheduleRequest,
        cron=cron,
        timezone=timezone,
        catch_up=catch_up,
        paused=paused,
        job=job,
    )
    return Op(patch_schedule, {"id": id, "body": body})


def delete_schedule_op(id: Any) -> Op:
    return Op(delete_schedule, {"id": id})


# ---------------------------------------------------------------------------- groups


def get_group_op(id: Any) -> Op:
    return Op(get_group, {"id": id})


def group_results_request(id: Any) -> dict[str, Any]:
    kwargs = get_group_results._get_kwargs(id=id)
    kwargs["headers"] = {**kwargs.get("headers", {}), "Accept": JSONL}
    return kwargs


class JsonLines:
    """Splits a streamed JSON Lines body into :class:`ResultLine`s as its bytes arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[ResultLine]:
        self._buffer += chunk
        end = self._buffer.rfind(b"\n")
        if end < 0:
            return []
        complete = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return [self._parse(line) for line in complete.split(b"\n") if line.strip()]

    def finish(self) -> None:
        """At the end of the body: a last line without its newline is a truncated stream."""
        if self._buffer.strip():
            raise TruncatedStreamError(
                status=self._response.status_code,
                code="truncated_stream",
                message=f"the results stream ended inside a line ({len(self._buffer)} bytes without a newline)",
                response=self._response,
            )

    def _parse(self, line: bytes) -> ResultLine:
        try:
            return ResultLine.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as error:
            raise OffpeakError(
                status=self._response.status_code,
                code="invalid_result_line",
                message=f"a line of the results stream is not a ResultLine: {error}",
                response=self._response,
            ) from error


# ---------------------------------------------------------------------------- webhooks


def create_webhook_op(*, url: str, events: Any, description: Any) -> Op:
    return Op(create_webhook, {"body": _body(CreateWebhook, url=url, events=events, description=description)})


def list_webhooks_op() -> Op:
    return Op(list_webhooks)


def get_webhook_op(id: Any) -> Op:
    return Op(get_webhook, {"id": id})


def update_webhook_op(id: Any, *, url: Any, events: Any, description: Any, enabled: Any) -> Op:
    body = _body(UpdateWebhook, url=url, events=events, description=description, enabled=enabled)
    return Op(update_webhook, {"id": id, "body": body})


def delete_webhook_op(id: Any) -> Op:
    return Op(delete_webhook, {"id": id})


def rotate_secret_op(id: Any) -> Op:
    return Op(rotate_webhook_secret, {"id": id})


def deliveries_op(id: Any, *, limit: Any, cursor: Any) -> Op:
    return Op(list_webhook_deliveries, {"id": id, "limit": limit, "cursor": cursor})


def replay_op(id: Any, delivery_id: Any) -> Op:
    return Op(replay_webhook_delivery, {"id": id, "delivery_id": delivery_id})


# ---------------------------------------------------------------------------- the rest


def next_window_op(*, timezone: Any, at: Any) -> Op:
    return Op(next_window, {"timezone": timezone, "at": _instant(at)})


def usage_op(*, start: Any, end: Any, group_by: Any) -> Op:
    return Op(
        get_usage,
        {
            "start": _day_or_instant(start),
            "end": _day_or_instant(end),
            "group_by": _enum(UsageGroupBy, group_by),
        },
    )


def tenant_op() -> Op:
    return Op(get_tenant)


def healthz_op() -> Op:
    return Op(healthz)


def readyz_op() -> Op:
    return Op(readyz, ok=frozenset({503}))


def metrics_op() -> Op:
    return Op(metrics)


def openapi_op() -> Op:
    return Op(openapi)

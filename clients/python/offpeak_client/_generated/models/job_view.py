from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.cache_kind import CacheKind
from ..models.cache_mode import CacheMode
from ..models.job_state import JobState
from ..models.priority import Priority

if TYPE_CHECKING:
    from ..models.job_view_input import JobViewInput
    from ..models.upgrade_target import UpgradeTarget


T = TypeVar("T", bound="JobView")


@_attrs_define
class JobView:
    """A job as the API shows it. Every property is always present; those
    without a value yet are `null`.

        Attributes:
            attempts (int):
            batch_id (None | UUID): The batch it was released in.
            cache (CacheMode): The cache a job uses: `off` (`"cache": false`), `exact`, or `semantic` (the exact cache
                first, then rewordings).
            cache_hit (bool):
            cache_kind (CacheKind | None):
            cache_similarity (float | None): For a `semantic` hit, the cosine similarity of this job's prompt to
                `cache_source`'s; null otherwise.
            cache_source (None | UUID): The job whose result this one got (`cache_hit`) or, while `queued`, waits for: an
                identical job
                already on its way to the provider (coalescing).
            children (list[UUID]): The jobs upgraded from this one, oldest first; `[]` when none.
            created_at (datetime.datetime):
            credits_ (int | None): Credits charged, once finished.
            error (Any): The last error, once `failed` or `dead` (or from a failed attempt).
            finished_at (datetime.datetime | None):
            group_id (None | UUID): The job's group: the bulk submission it came in, or the group a single submission named.
            id (UUID):
            input_ (JobViewInput):
            max_attempts (int):
            metadata (Any):
            model (str):
            parent_id (None | UUID): The job this one was upgraded from (`POST /v1/jobs/{id}/upgrade`).
            priority (Priority): `low` (the default) waits for the off-peak window in the job's timezone; `normal` is
                released at once.
            queued_at (datetime.datetime | None):
            release_at (datetime.datetime): When the job is (or was) due for release: the window's opening for `low`, the
                submission for `normal`.
            result (Any): The provider's result, once `succeeded`.
            started_at (datetime.datetime | None):
            state (JobState): A job's state: `held` until its release, `queued` in a batch on the queue, `running` at the
                provider, then
                exactly one of `succeeded`, `failed` (the provider refused the item), `dead` (out of attempts on transient
                errors) or `cancelled`.
            timezone (str):
            upgrade (None | UpgradeTarget):
            use_case (None | str): The use case of a job submitted with `"model": "auto"`; `model` is the model it was
                routed to.
            user_id (None | str):
            window_closes_at (datetime.datetime | None): When the job's window closes (`low` only).
    """

    attempts: int
    batch_id: None | UUID
    cache: CacheMode
    cache_hit: bool
    cache_kind: CacheKind | None
    cache_similarity: float | None
    cache_source: None | UUID
    children: list[UUID]
    created_at: datetime.datetime
    credits_: int | None
    error: Any
    finished_at: datetime.datetime | None
    group_id: None | UUID
    id: UUID
    input_: JobViewInput
    max_attempts: int
    metadata: Any
    model: str
    parent_id: None | UUID
    priority: Priority
    queued_at: datetime.datetime | None
    release_at: datetime.datetime
    result: Any
    started_at: datetime.datetime | None
    state: JobState
    timezone: str
    upgrade: None | UpgradeTarget
    use_case: None | str
    user_id: None | str
    window_closes_at: datetime.datetime | None
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.upgrade_target import UpgradeTarget

        attempts = self.attempts

        batch_id: None | str
        if isinstance(self.batch_id, UUID):
            batch_id = str(self.batch_id)
        else:
            batch_id = self.batch_id

        cache = self.cache.value

        cache_hit = self.cache_hit

        cache_kind: None | str
        if isinstance(self.cache_kind, CacheKind):
            cache_kind = self.cache_kind.value
        else:
            cache_kind = self.cache_kind

        cache_similarity: float | None
        cache_similarity = self.cache_similarity

        cache_source: None | str
        if isinstance(self.cache_source, UUID):
            cache_source = str(self.cache_source)
        else:
            cache_source = self.cache_source

        children = []
        for children_item_data in self.children:
            children_item = str(children_item_data)
            children.append(children_item)

        created_at = self.created_at.isoformat()

        credits_: int | None
        credits_ = self.credits_

        error = self.error

        finished_at: None | str
        if isinstance(self.finished_at, datetime.datetime):
            finished_at = self.finished_at.isoformat()
        else:
            finished_at = self.finished_at

        group_id: None | str
        if isinstance(self.group_id, UUID):
            group_id = str(self.group_id)
        else:
            group_id = self.group_id

        id = str(self.id)

        input_ = self.input_.to_dict()

        max_attempts = self.max_attempts

        metadata = self.metadata

        model = self.model

        parent_id: None | str
        if isinstance(self.parent_id, UUID):
            parent_id = str(self.parent_id)
        else:
            parent_id = self.parent_id

        priority = self.priority.value

        queued_at: None | str
        if isinstance(self.queued_at, datetime.datetime):
            queued_at = self.queued_at.isoformat()
        else:
            queued_at = self.queued_at

        release_at = self.release_at.isoformat()

        result = self.result

        started_at: None | str
        if isinstance(self.started_at, datetime.datetime):
            started_at = self.started_at.isoformat()
        else:
            started_at = self.started_at

        state = self.state.value

        timezone = self.timezone

        upgrade: dict[str, Any] | None
        if isinstance(self.upgrade, UpgradeTarget):
            upgrade = self.upgrade.to_dict()
        else:
            upgrade = self.upgrade

        use_case: None | str
        use_case = self.use_case

        user_id: None | str
        user_id = self.user_id

        window_closes_at: None | str
        if isinstance(self.window_closes_at, datetime.datetime):
            window_closes_at = self.window_closes_at.isoformat()
        else:
            window_closes_at = self.window_closes_at

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "attempts": attempts,
                "batch_id": batch_id,
                "cache": cache,
                "cache_hit": cache_hit,
                "cache_kind": cache_kind,
                "cache_similarity": cache_similarity,
                "cache_source": cache_source,
                "children": children,
                "created_at": created_at,
                "credits": credits_,
                "error": error,
                "finished_at": finished_at,
                "group_id": group_id,
                "id": id,
                "input": input_,
                "max_attempts": max_attempts,
                "metadata": metadata,
                "model": model,
                "parent_id": parent_id,
                "priority": priority,
                "queued_at": queued_at,
                "release_at": release_at,
                "result": result,
                "started_at": started_at,
                "state": state,
                "timezone": timezone,
                "upgrade": upgrade,
                "use_case": use_case,
                "user_id": user_id,
                "window_closes_at": window_closes_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.job_view_input import JobViewInput
        from ..models.upgrade_target import UpgradeTarget

        d = dict(src_dict)
        attempts = d.pop("attempts")

        def _parse_batch_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                batch_id_type_0 = UUID(data)

                return batch_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        batch_id = _parse_batch_id(d.pop("batch_id"))

        cache = CacheMode(d.pop("cache"))

        cache_hit = d.pop("cache_hit")

        def _parse_cache_kind(data: object) -> CacheKind | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                cache_kind_type_1 = CacheKind(data)

                return cache_kind_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CacheKind | None, data)

        cache_kind = _parse_cache_kind(d.pop("cache_kind"))

        def _parse_cache_similarity(data: object) -> float | None:
            if data is None:
                return data
            return cast(float | None, data)

        cache_similarity = _parse_cache_similarity(d.pop("cache_similarity"))

        def _parse_cache_source(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                cache_source_type_0 = UUID(data)

                return cache_source_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        cache_source = _parse_cache_source(d.pop("cache_source"))

        children = []
        _children = d.pop("children")
        for children_item_data in _children:
            children_item = UUID(children_item_data)

            children.append(children_item)

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        def _parse_credits_(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        credits_ = _parse_credits_(d.pop("credits"))

        error = d.pop("error")

        def _parse_finished_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                finished_at_type_0 = datetime.datetime.fromisoformat(data)

                return finished_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        finished_at = _parse_finished_at(d.pop("finished_at"))

        def _parse_group_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                group_id_type_0 = UUID(data)

                return group_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        group_id = _parse_group_id(d.pop("group_id"))

        id = UUID(d.pop("id"))

        input_ = JobViewInput.from_dict(d.pop("input"))

        max_attempts = d.pop("max_attempts")

        metadata = d.pop("metadata")

        model = d.pop("model")

        def _parse_parent_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                parent_id_type_0 = UUID(data)

                return parent_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        parent_id = _parse_parent_id(d.pop("parent_id"))

        priority = Priority(d.pop("priority"))

        def _parse_queued_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                queued_at_type_0 = datetime.datetime.fromisoformat(data)

                return queued_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        queued_at = _parse_queued_at(d.pop("queued_at"))

        release_at = datetime.datetime.fromisoformat(d.pop("release_at"))

        result = d.pop("result")

        def _parse_started_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                started_at_type_0 = datetime.datetime.fromisoformat(data)

                return started_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        started_at = _parse_started_at(d.pop("started_at"))

        state = JobState(d.pop("state"))

        timezone = d.pop("timezone")

        def _parse_upgrade(data: object) -> None | UpgradeTarget:
            if data is None:
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                upgrade_type_1 = UpgradeTarget.from_dict(data)

                return upgrade_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UpgradeTarget, data)

        upgrade = _parse_upgrade(d.pop("upgrade"))

        def _parse_use_case(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        use_case = _parse_use_case(d.pop("use_case"))

        def _parse_user_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        user_id = _parse_user_id(d.pop("user_id"))

        def _parse_window_closes_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                window_closes_at_type_0 = datetime.datetime.fromisoformat(data)

                return window_closes_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        window_closes_at = _parse_window_closes_at(d.pop("window_closes_at"))

        job_view = cls(
            attempts=attempts,
            batch_id=batch_id,
            cache=cache,
            cache_hit=cache_hit,
            cache_kind=cache_kind,
            cache_similarity=cache_similarity,
            cache_source=cache_source,
            children=children,
            created_at=created_at,
            credits_=credits_,
            error=error,
            finished_at=finished_at,
            group_id=group_id,
            id=id,
            input_=input_,
            max_attempts=max_attempts,
            metadata=metadata,
            model=model,
            parent_id=parent_id,
            priority=priority,
            queued_at=queued_at,
            release_at=release_at,
            result=result,
            started_at=started_at,
            state=state,
            timezone=timezone,
            upgrade=upgrade,
            use_case=use_case,
            user_id=user_id,
            window_closes_at=window_closes_at,
        )

        job_view.additional_properties = d
        return job_view

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties

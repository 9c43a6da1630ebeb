from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Self, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_state import JobState

T = TypeVar("T", bound="BulkResponse")


@_attrs_define
class BulkResponse:
    """The jobs of a bulk submission, all stored in one transaction.

    Attributes:
        cache_hits (int): Inputs answered at once from an identical job's result (`succeeded`, 0 credits); read them
            with
            `GET /v1/jobs/{id}`.
        count (int):
        group_id (UUID): The group these jobs form: `GET /v1/groups/{id}` counts them by state, `/results` streams them,
            and
            `group.completed` is sent when the last has ended.
        ids (list[UUID]): The jobs' ids, in the order of `inputs`.
        release_at (datetime.datetime):
        state (JobState): A job's state: `held` until its release, `queued` in a batch on the queue, `running` at the
            provider, then
            exactly one of `succeeded`, `failed` (the provider refused the item), `dead` (out of attempts on transient
            errors) or `cancelled`.
        window_closes_at (datetime.datetime | None):
    """

    cache_hits: int
    count: int
    group_id: UUID
    ids: list[UUID]
    release_at: datetime.datetime
    state: JobState
    window_closes_at: datetime.datetime | None
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cache_hits = self.cache_hits

        count = self.count

        group_id = str(self.group_id)

        ids = []
        for ids_item_data in self.ids:
            ids_item = str(ids_item_data)
            ids.append(ids_item)

        release_at = self.release_at.isoformat()

        state = self.state.value

        window_closes_at: None | str
        if isinstance(self.window_closes_at, datetime.datetime):
            window_closes_at = self.window_closes_at.isoformat()
        else:
            window_closes_at = self.window_closes_at

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "cache_hits": cache_hits,
                "count": count,
                "group_id": group_id,
                "ids": ids,
                "release_at": release_at,
                "state": state,
                "window_closes_at": window_closes_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        cache_hits = d.pop("cache_hits")

        count = d.pop("count")

        group_id = UUID(d.pop("group_id"))

        ids = []
        _ids = d.pop("ids")
        for ids_item_data in _ids:
            ids_item = UUID(ids_item_data)

            ids.append(ids_item)

        release_at = datetime.datetime.fromisoformat(d.pop("release_at"))

        state = JobState(d.pop("state"))

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

        bulk_response = cls(
            cache_hits=cache_hits,
            count=count,
            group_id=group_id,
            ids=ids,
            release_at=release_at,
            state=state,
            window_closes_at=window_closes_at,
        )

        bulk_response.additional_properties = d
        return bulk_response

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

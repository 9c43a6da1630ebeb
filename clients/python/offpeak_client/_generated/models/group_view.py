from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.group_counts import GroupCounts


T = TypeVar("T", bound="GroupView")


@_attrs_define
class GroupView:
    """A group as the API shows it.

    Attributes:
        completed_at (datetime.datetime | None): When its last job ended and `group.completed` was written; null while
            any job is open.
        counts (GroupCounts): A group's jobs counted by state.
        created_at (datetime.datetime):
        credits_ (int): Credits charged so far to its finished jobs.
        id (UUID):
        name (None | str): The name single submissions gave it (`"group"`); null for a bulk submission's.
    """

    completed_at: datetime.datetime | None
    counts: GroupCounts
    created_at: datetime.datetime
    credits_: int
    id: UUID
    name: None | str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        completed_at: None | str
        if isinstance(self.completed_at, datetime.datetime):
            completed_at = self.completed_at.isoformat()
        else:
            completed_at = self.completed_at

        counts = self.counts.to_dict()

        created_at = self.created_at.isoformat()

        credits_ = self.credits_

        id = str(self.id)

        name: None | str
        name = self.name

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "completed_at": completed_at,
                "counts": counts,
                "created_at": created_at,
                "credits": credits_,
                "id": id,
                "name": name,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.group_counts import GroupCounts

        d = dict(src_dict)

        def _parse_completed_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                completed_at_type_0 = datetime.datetime.fromisoformat(data)

                return completed_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        completed_at = _parse_completed_at(d.pop("completed_at"))

        counts = GroupCounts.from_dict(d.pop("counts"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        credits_ = d.pop("credits")

        id = UUID(d.pop("id"))

        def _parse_name(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        name = _parse_name(d.pop("name"))

        group_view = cls(
            completed_at=completed_at,
            counts=counts,
            created_at=created_at,
            credits_=credits_,
            id=id,
            name=name,
        )

        group_view.additional_properties = d
        return group_view

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

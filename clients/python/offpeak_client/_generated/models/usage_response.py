from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.usage_group import UsageGroup
    from ..models.usage_response_groups import UsageResponseGroups


T = TypeVar("T", bound="UsageResponse")


@_attrs_define
class UsageResponse:
    """The tenant's usage in `[start, end)`.

    Attributes:
        end (datetime.datetime): Excluded.
        group_by (str): `model`, `day`, `user` or `provider`.
        groups (UsageResponseGroups): One entry per model, day (`YYYY-MM-DD`), user or provider (`cache` for cache hits)
            with usage in the
            range, in key order, e.g.
            `{"flux-schnell": {"requests": 50000, "credits": 50000, ...}}`.
        start (datetime.datetime):
        timezone (str): The tenant's timezone, which days are counted in.
        totals (UsageGroup): Requests and credits of one group.
    """

    end: datetime.datetime
    group_by: str
    groups: UsageResponseGroups
    start: datetime.datetime
    timezone: str
    totals: UsageGroup
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        end = self.end.isoformat()

        group_by = self.group_by

        groups = self.groups.to_dict()

        start = self.start.isoformat()

        timezone = self.timezone

        totals = self.totals.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "end": end,
                "group_by": group_by,
                "groups": groups,
                "start": start,
                "timezone": timezone,
                "totals": totals,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.usage_group import UsageGroup
        from ..models.usage_response_groups import UsageResponseGroups

        d = dict(src_dict)
        end = datetime.datetime.fromisoformat(d.pop("end"))

        group_by = d.pop("group_by")

        groups = UsageResponseGroups.from_dict(d.pop("groups"))

        start = datetime.datetime.fromisoformat(d.pop("start"))

        timezone = d.pop("timezone")

        totals = UsageGroup.from_dict(d.pop("totals"))

        usage_response = cls(
            end=end,
            group_by=group_by,
            groups=groups,
            start=start,
            timezone=timezone,
            totals=totals,
        )

        usage_response.additional_properties = d
        return usage_response

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

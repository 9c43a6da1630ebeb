from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Self, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="QuotaView")


@_attrs_define
class QuotaView:
    """Today's quota of a tenant.

    Attributes:
        day (datetime.date): The day (tenant's timezone) the quota counts.
        remaining (int | None): `daily_credits - used`, if there is a limit.
        resets_at (datetime.datetime): When the day ends and the quota starts again.
        used (int): Credits counted today: finished jobs' credits plus unfinished jobs' reservations (their price at
            submission), for the jobs submitted today (tenant's timezone).
    """

    day: datetime.date
    remaining: int | None
    resets_at: datetime.datetime
    used: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        day = self.day.isoformat()

        remaining: int | None
        remaining = self.remaining

        resets_at = self.resets_at.isoformat()

        used = self.used

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "day": day,
                "remaining": remaining,
                "resets_at": resets_at,
                "used": used,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        day = datetime.date.fromisoformat(d.pop("day"))

        def _parse_remaining(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        remaining = _parse_remaining(d.pop("remaining"))

        resets_at = datetime.datetime.fromisoformat(d.pop("resets_at"))

        used = d.pop("used")

        quota_view = cls(
            day=day,
            remaining=remaining,
            resets_at=resets_at,
            used=used,
        )

        quota_view.additional_properties = d
        return quota_view

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

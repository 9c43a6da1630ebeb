from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="FireTime")


@_attrs_define
class FireTime:
    """One upcoming fire time, in UTC and in the schedule's timezone.

    Attributes:
        local (str): RFC 3339 with the local offset, e.g. `2027-03-14T03:00:00-04:00`.
        utc (datetime.datetime):
    """

    local: str
    utc: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        local = self.local

        utc = self.utc.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "local": local,
                "utc": utc,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        local = d.pop("local")

        utc = datetime.datetime.fromisoformat(d.pop("utc"))

        fire_time = cls(
            local=local,
            utc=utc,
        )

        fire_time.additional_properties = d
        return fire_time

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

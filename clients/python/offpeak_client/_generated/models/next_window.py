from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="NextWindow")


@_attrs_define
class NextWindow:
    """The window a low-priority job submitted at `at` would run in.

    Attributes:
        at (datetime.datetime):
        closes_at (datetime.datetime):
        duration_seconds (int):
        open_now (bool):
        opens_at (datetime.datetime):
        timezone (str):
        window (str):
    """

    at: datetime.datetime
    closes_at: datetime.datetime
    duration_seconds: int
    open_now: bool
    opens_at: datetime.datetime
    timezone: str
    window: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        at = self.at.isoformat()

        closes_at = self.closes_at.isoformat()

        duration_seconds = self.duration_seconds

        open_now = self.open_now

        opens_at = self.opens_at.isoformat()

        timezone = self.timezone

        window = self.window

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "at": at,
                "closes_at": closes_at,
                "duration_seconds": duration_seconds,
                "open_now": open_now,
                "opens_at": opens_at,
                "timezone": timezone,
                "window": window,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        at = datetime.datetime.fromisoformat(d.pop("at"))

        closes_at = datetime.datetime.fromisoformat(d.pop("closes_at"))

        duration_seconds = d.pop("duration_seconds")

        open_now = d.pop("open_now")

        opens_at = datetime.datetime.fromisoformat(d.pop("opens_at"))

        timezone = d.pop("timezone")

        window = d.pop("window")

        next_window = cls(
            at=at,
            closes_at=closes_at,
            duration_seconds=duration_seconds,
            open_now=open_now,
            opens_at=opens_at,
            timezone=timezone,
            window=window,
        )

        next_window.additional_properties = d
        return next_window

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

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="TodayUsage")


@_attrs_define
class TodayUsage:
    """Today's usage, in the tenant's timezone.

    Attributes:
        credits_ (int): Credits charged.
        list_credits (int): What the same jobs cost at list price.
        previews (int): Previews (jobs submitted with `preview`) among the jobs counted.
        requests (int): Jobs that succeeded (each one provider item, or a cache hit).
        saved_cache (int): Credits exact cache hits (and coalesced jobs) saved.
        saved_offpeak (int): Credits the off-peak multiplier saved (list price minus charged, cache hits aside).
        saved_preview (int): What the preview-first pattern saved at list prices against rendering every preview request
            at full
            quality: for each preview, its upgrade target's list price minus its own, less the list price of every
            upgrade of a preview. Negative when more was upgraded than the previews saved. Apart from `saved_offpeak`
            and `saved_cache`, which are counted on the jobs that ran.
        saved_semantic (int): Credits semantic cache hits (rewordings of a prompt that succeeded) saved.
        upgrades (int): Upgrades (jobs made by `POST /v1/jobs/{id}/upgrade`) among the jobs counted.
        date (str): Today's date in the tenant's timezone. Example: 2027-06-01.
        end (datetime.datetime):
        start (datetime.datetime):
    """

    credits_: int
    list_credits: int
    previews: int
    requests: int
    saved_cache: int
    saved_offpeak: int
    saved_preview: int
    saved_semantic: int
    upgrades: int
    date: str
    end: datetime.datetime
    start: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        credits_ = self.credits_

        list_credits = self.list_credits

        previews = self.previews

        requests = self.requests

        saved_cache = self.saved_cache

        saved_offpeak = self.saved_offpeak

        saved_preview = self.saved_preview

        saved_semantic = self.saved_semantic

        upgrades = self.upgrades

        date = self.date

        end = self.end.isoformat()

        start = self.start.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "credits": credits_,
                "list_credits": list_credits,
                "previews": previews,
                "requests": requests,
                "saved_cache": saved_cache,
                "saved_offpeak": saved_offpeak,
                "saved_preview": saved_preview,
                "saved_semantic": saved_semantic,
                "upgrades": upgrades,
                "date": date,
                "end": end,
                "start": start,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        credits_ = d.pop("credits")

        list_credits = d.pop("list_credits")

        previews = d.pop("previews")

        requests = d.pop("requests")

        saved_cache = d.pop("saved_cache")

        saved_offpeak = d.pop("saved_offpeak")

        saved_preview = d.pop("saved_preview")

        saved_semantic = d.pop("saved_semantic")

        upgrades = d.pop("upgrades")

        date = d.pop("date")

        end = datetime.datetime.fromisoformat(d.pop("end"))

        start = datetime.datetime.fromisoformat(d.pop("start"))

        today_usage = cls(
            credits_=credits_,
            list_credits=list_credits,
            previews=previews,
            requests=requests,
            saved_cache=saved_cache,
            saved_offpeak=saved_offpeak,
            saved_preview=saved_preview,
            saved_semantic=saved_semantic,
            upgrades=upgrades,
            date=date,
            end=end,
            start=start,
        )

        today_usage.additional_properties = d
        return today_usage

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

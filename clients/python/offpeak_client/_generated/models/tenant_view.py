from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.cache_mode import CacheMode

if TYPE_CHECKING:
    from ..models.quota_view import QuotaView
    from ..models.today_usage import TodayUsage


T = TypeVar("T", bound="TenantView")


@_attrs_define
class TenantView:
    """The tenant's own settings and today's usage.

    Attributes:
        cache (CacheMode): The cache a job uses: `off` (`"cache": false`), `exact`, or `semantic` (the exact cache
            first, then rewordings).
        created_at (datetime.datetime):
        daily_credits (int | None): The tenant's daily credit limit, if any.
        id (UUID):
        name (str):
        offpeak_multiplier (float): What low-priority jobs pay as a multiple of the list price.
        quota (QuotaView): Today's quota of a tenant.
        timezone (str): The default timezone of jobs and schedules, and the one usage days are counted in.
        today (TodayUsage): Today's usage, in the tenant's timezone.
        user_daily_credits (int | None): The daily credit limit of each `user_id`, if any.
        window (str): The off-peak window of the tenant's low-priority jobs, local wall-clock time, e.g. `02:00-06:00`.
    """

    cache: CacheMode
    created_at: datetime.datetime
    daily_credits: int | None
    id: UUID
    name: str
    offpeak_multiplier: float
    quota: QuotaView
    timezone: str
    today: TodayUsage
    user_daily_credits: int | None
    window: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cache = self.cache.value

        created_at = self.created_at.isoformat()

        daily_credits: int | None
        daily_credits = self.daily_credits

        id = str(self.id)

        name = self.name

        offpeak_multiplier = self.offpeak_multiplier

        quota = self.quota.to_dict()

        timezone = self.timezone

        today = self.today.to_dict()

        user_daily_credits: int | None
        user_daily_credits = self.user_daily_credits

        window = self.window

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "cache": cache,
                "created_at": created_at,
                "daily_credits": daily_credits,
                "id": id,
                "name": name,
                "offpeak_multiplier": offpeak_multiplier,
                "quota": quota,
                "timezone": timezone,
                "today": today,
                "user_daily_credits": user_daily_credits,
                "window": window,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.quota_view import QuotaView
        from ..models.today_usage import TodayUsage

        d = dict(src_dict)
        cache = CacheMode(d.pop("cache"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        def _parse_daily_credits(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        daily_credits = _parse_daily_credits(d.pop("daily_credits"))

        id = UUID(d.pop("id"))

        name = d.pop("name")

        offpeak_multiplier = d.pop("offpeak_multiplier")

        quota = QuotaView.from_dict(d.pop("quota"))

        timezone = d.pop("timezone")

        today = TodayUsage.from_dict(d.pop("today"))

        def _parse_user_daily_credits(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        user_daily_credits = _parse_user_daily_credits(d.pop("user_daily_credits"))

        window = d.pop("window")

        tenant_view = cls(
            cache=cache,
            created_at=created_at,
            daily_credits=daily_credits,
            id=id,
            name=name,
            offpeak_multiplier=offpeak_multiplier,
            quota=quota,
            timezone=timezone,
            today=today,
            user_daily_credits=user_daily_credits,
            window=window,
        )

        tenant_view.additional_properties = d
        return tenant_view

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

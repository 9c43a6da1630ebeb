from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.catch_up import CatchUp
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.fire_time import FireTime
    from ..models.firing import Firing
    from ..models.job_template import JobTemplate


T = TypeVar("T", bound="Schedule")


@_attrs_define
class Schedule:
    """A schedule as the API shows it. `next_fire_times` and `recent_firings`
    are given on a single schedule's responses, not in listings.

        Attributes:
            catch_up (CatchUp): What a schedule does with firings it missed: `latest` (the default) fires only the most
                recent, `all` fires
                every one (the most recent up to a cap), `none` skips them.
            created_at (datetime.datetime):
            cron (str):
            id (UUID):
            job (JobTemplate): The job template as the API shows it.
            last_fired_at (datetime.datetime | None):
            missed_firings (int): Missed firings its `catch_up` policy skipped so far.
            name (str):
            next_fire_at (datetime.datetime | None): The next firing not yet made; null while paused.
            paused (bool):
            timezone (str):
            updated_at (datetime.datetime):
            next_fire_times (list[FireTime] | Unset): The next firings (none while paused); on a single schedule's responses
                only.
            recent_firings (list[Firing] | Unset): The latest firings, newest first; on a single schedule's responses only.
    """

    catch_up: CatchUp
    created_at: datetime.datetime
    cron: str
    id: UUID
    job: JobTemplate
    last_fired_at: datetime.datetime | None
    missed_firings: int
    name: str
    next_fire_at: datetime.datetime | None
    paused: bool
    timezone: str
    updated_at: datetime.datetime
    next_fire_times: list[FireTime] | Unset = UNSET
    recent_firings: list[Firing] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        catch_up = self.catch_up.value

        created_at = self.created_at.isoformat()

        cron = self.cron

        id = str(self.id)

        job = self.job.to_dict()

        last_fired_at: None | str
        if isinstance(self.last_fired_at, datetime.datetime):
            last_fired_at = self.last_fired_at.isoformat()
        else:
            last_fired_at = self.last_fired_at

        missed_firings = self.missed_firings

        name = self.name

        next_fire_at: None | str
        if isinstance(self.next_fire_at, datetime.datetime):
            next_fire_at = self.next_fire_at.isoformat()
        else:
            next_fire_at = self.next_fire_at

        paused = self.paused

        timezone = self.timezone

        updated_at = self.updated_at.isoformat()

        next_fire_times: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.next_fire_times, Unset):
            next_fire_times = []
            for next_fire_times_item_data in self.next_fire_times:
                next_fire_times_item = next_fire_times_item_data.to_dict()
                next_fire_times.append(next_fire_times_item)

        recent_firings: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.recent_firings, Unset):
            recent_firings = []
            for recent_firings_item_data in self.recent_firings:
                recent_firings_item = recent_firings_item_data.to_dict()
                recent_firings.append(recent_firings_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "catch_up": catch_up,
                "created_at": created_at,
                "cron": cron,
                "id": id,
                "job": job,
                "last_fired_at": last_fired_at,
                "missed_firings": missed_firings,
                "name": name,
                "next_fire_at": next_fire_at,
                "paused": paused,
                "timezone": timezone,
                "updated_at": updated_at,
            }
        )
        if next_fire_times is not UNSET:
            field_dict["next_fire_times"] = next_fire_times
        if recent_firings is not UNSET:
            field_dict["recent_firings"] = recent_firings

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.fire_time import FireTime
        from ..models.firing import Firing
        from ..models.job_template import JobTemplate

        d = dict(src_dict)
        catch_up = CatchUp(d.pop("catch_up"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        cron = d.pop("cron")

        id = UUID(d.pop("id"))

        job = JobTemplate.from_dict(d.pop("job"))

        def _parse_last_fired_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                last_fired_at_type_0 = datetime.datetime.fromisoformat(data)

                return last_fired_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        last_fired_at = _parse_last_fired_at(d.pop("last_fired_at"))

        missed_firings = d.pop("missed_firings")

        name = d.pop("name")

        def _parse_next_fire_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                next_fire_at_type_0 = datetime.datetime.fromisoformat(data)

                return next_fire_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        next_fire_at = _parse_next_fire_at(d.pop("next_fire_at"))

        paused = d.pop("paused")

        timezone = d.pop("timezone")

        updated_at = datetime.datetime.fromisoformat(d.pop("updated_at"))

        _next_fire_times = d.pop("next_fire_times", UNSET)
        next_fire_times: list[FireTime] | Unset = UNSET
        if _next_fire_times is not UNSET:
            next_fire_times = []
            for next_fire_times_item_data in _next_fire_times:
                next_fire_times_item = FireTime.from_dict(next_fire_times_item_data)

                next_fire_times.append(next_fire_times_item)

        _recent_firings = d.pop("recent_firings", UNSET)
        recent_firings: list[Firing] | Unset = UNSET
        if _recent_firings is not UNSET:
            recent_firings = []
            for recent_firings_item_data in _recent_firings:
                recent_firings_item = Firing.from_dict(recent_firings_item_data)

                recent_firings.append(recent_firings_item)

        schedule = cls(
            catch_up=catch_up,
            created_at=created_at,
            cron=cron,
            id=id,
            job=job,
            last_fired_at=last_fired_at,
            missed_firings=missed_firings,
            name=name,
            next_fire_at=next_fire_at,
            paused=paused,
            timezone=timezone,
            updated_at=updated_at,
            next_fire_times=next_fire_times,
            recent_firings=recent_firings,
        )

        schedule.additional_properties = d
        return schedule

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

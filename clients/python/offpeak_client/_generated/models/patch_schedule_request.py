from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.catch_up import CatchUp
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.job_template_request import JobTemplateRequest


T = TypeVar("T", bound="PatchScheduleRequest")


@_attrs_define
class PatchScheduleRequest:
    """`PATCH /v1/schedules/{id}`: every field optional; `job` replaces the
    whole template.

        Attributes:
            catch_up (CatchUp | None | Unset):
            cron (None | str | Unset): A new expression, as at creation (format `cron`). Example: 0 4 * * *.
            job (JobTemplateRequest | Unset): The job each firing creates.
            paused (bool | None | Unset):
            timezone (None | str | Unset):
    """

    catch_up: CatchUp | None | Unset = UNSET
    cron: None | str | Unset = UNSET
    job: JobTemplateRequest | Unset = UNSET
    paused: bool | None | Unset = UNSET
    timezone: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        catch_up: None | str | Unset
        if isinstance(self.catch_up, Unset):
            catch_up = UNSET
        elif isinstance(self.catch_up, CatchUp):
            catch_up = self.catch_up.value
        else:
            catch_up = self.catch_up

        cron: None | str | Unset
        if isinstance(self.cron, Unset):
            cron = UNSET
        else:
            cron = self.cron

        job: dict[str, Any] | Unset = UNSET
        if not isinstance(self.job, Unset):
            job = self.job.to_dict()

        paused: bool | None | Unset
        if isinstance(self.paused, Unset):
            paused = UNSET
        else:
            paused = self.paused

        timezone: None | str | Unset
        if isinstance(self.timezone, Unset):
            timezone = UNSET
        else:
            timezone = self.timezone

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if catch_up is not UNSET:
            field_dict["catch_up"] = catch_up
        if cron is not UNSET:
            field_dict["cron"] = cron
        if job is not UNSET:
            field_dict["job"] = job
        if paused is not UNSET:
            field_dict["paused"] = paused
        if timezone is not UNSET:
            field_dict["timezone"] = timezone

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.job_template_request import JobTemplateRequest

        d = dict(src_dict)

        def _parse_catch_up(data: object) -> CatchUp | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                catch_up_type_1 = CatchUp(data)

                return catch_up_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CatchUp | None | Unset, data)

        catch_up = _parse_catch_up(d.pop("catch_up", UNSET))

        def _parse_cron(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        cron = _parse_cron(d.pop("cron", UNSET))

        _job = d.pop("job", UNSET)
        job: JobTemplateRequest | Unset
        if isinstance(_job, Unset):
            job = UNSET
        else:
            job = JobTemplateRequest.from_dict(_job)

        def _parse_paused(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        paused = _parse_paused(d.pop("paused", UNSET))

        def _parse_timezone(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        timezone = _parse_timezone(d.pop("timezone", UNSET))

        patch_schedule_request = cls(
            catch_up=catch_up,
            cron=cron,
            job=job,
            paused=paused,
            timezone=timezone,
        )

        return patch_schedule_request

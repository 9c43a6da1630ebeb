from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.catch_up import CatchUp
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.job_template_request import JobTemplateRequest


T = TypeVar("T", bound="CreateScheduleRequest")


@_attrs_define
class CreateScheduleRequest:
    """`POST /v1/schedules`.

    Attributes:
        cron (str): 5, 6 or 7 fields, or an `@` shorthand, in `timezone`; one that does not parse or never fires
            again is a 422 `invalid_cron` naming the field at fault. Format `cron`: JSON Schema cannot
            state the grammar. Example: 0 3 * * *.
        job (JobTemplateRequest): The job each firing creates.
        name (str): Unique per tenant: 1 to 200 characters without control characters.
        catch_up (CatchUp | Unset): What a schedule does with firings it missed: `latest` (the default) fires only the
            most recent, `all` fires
            every one (the most recent up to a cap), `none` skips them.
        paused (bool | Unset):
        timezone (None | str | Unset): Defaults to the tenant's timezone.
    """

    cron: str
    job: JobTemplateRequest
    name: str
    catch_up: CatchUp | Unset = UNSET
    paused: bool | Unset = UNSET
    timezone: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        cron = self.cron

        job = self.job.to_dict()

        name = self.name

        catch_up: str | Unset = UNSET
        if not isinstance(self.catch_up, Unset):
            catch_up = self.catch_up.value

        paused = self.paused

        timezone: None | str | Unset
        if isinstance(self.timezone, Unset):
            timezone = UNSET
        else:
            timezone = self.timezone

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "cron": cron,
                "job": job,
                "name": name,
            }
        )
        if catch_up is not UNSET:
            field_dict["catch_up"] = catch_up
        if paused is not UNSET:
            field_dict["paused"] = paused
        if timezone is not UNSET:
            field_dict["timezone"] = timezone

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.job_template_request import JobTemplateRequest

        d = dict(src_dict)
        cron = d.pop("cron")

        job = JobTemplateRequest.from_dict(d.pop("job"))

        name = d.pop("name")

        _catch_up = d.pop("catch_up", UNSET)
        catch_up: CatchUp | Unset
        if isinstance(_catch_up, Unset):
            catch_up = UNSET
        else:
            catch_up = CatchUp(_catch_up)

        paused = d.pop("paused", UNSET)

        def _parse_timezone(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        timezone = _parse_timezone(d.pop("timezone", UNSET))

        create_schedule_request = cls(
            cron=cron,
            job=job,
            name=name,
            catch_up=catch_up,
            paused=paused,
            timezone=timezone,
        )

        return create_schedule_request

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.error_detail_details import ErrorDetailDetails


T = TypeVar("T", bound="ErrorDetail")


@_attrs_define
class ErrorDetail:
    """What went wrong.

    Attributes:
        code (str): Stable, machine-readable: e.g. `invalid_json`, `invalid_field`, `invalid_query`, `invalid_cursor`,
            `invalid_input`, `invalid_timezone`, `unknown_model`, `unknown_use_case`, `invalid_idempotency_key`,
            `idempotency_conflict`,
            `not_cancellable`, `not_upgradable`, `unauthorized`, `not_found`, `method_not_allowed`, `payload_too_large`,
            `too_many_inputs`, `invalid_body`, `quota_exceeded`, `unavailable`, `internal`.
        message (str): For people: what is wrong and, where it helps, what would be right.
        details (ErrorDetailDetails | Unset): Machine-readable particulars of some errors: for `quota_exceeded`, `scope`
            (`tenant` or `user`),
            `limit`, `used`, `requested`, `day` and `resets_at`.
        field (str | Unset): The request field or query parameter at fault, when there is one (e.g. `timezone`,
            `inputs[3]`,
            `input.size`).
    """

    code: str
    message: str
    details: ErrorDetailDetails | Unset = UNSET
    field: str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        code = self.code

        message = self.message

        details: dict[str, Any] | Unset = UNSET
        if not isinstance(self.details, Unset):
            details = self.details.to_dict()

        field = self.field

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "code": code,
                "message": message,
            }
        )
        if details is not UNSET:
            field_dict["details"] = details
        if field is not UNSET:
            field_dict["field"] = field

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.error_detail_details import ErrorDetailDetails

        d = dict(src_dict)
        code = d.pop("code")

        message = d.pop("message")

        _details = d.pop("details", UNSET)
        details: ErrorDetailDetails | Unset
        if isinstance(_details, Unset):
            details = UNSET
        else:
            details = ErrorDetailDetails.from_dict(_details)

        field = d.pop("field", UNSET)

        error_detail = cls(
            code=code,
            message=message,
            details=details,
            field=field,
        )

        return error_detail

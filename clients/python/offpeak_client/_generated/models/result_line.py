from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_state import JobState
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.result_line_error_type_0 import ResultLineErrorType0
    from ..models.result_line_result_type_0 import ResultLineResultType0


T = TypeVar("T", bound="ResultLine")


@_attrs_define
class ResultLine:
    """One line of `GET /v1/groups/{id}/results`.

    Attributes:
        credits_ (int | None):
        id (UUID):
        metadata (Any): The job's `metadata`, as submitted (any JSON).
        state (JobState): A job's state: `held` until its release, `queued` in a batch on the queue, `running` at the
            provider, then
            exactly one of `succeeded`, `failed` (the provider refused the item), `dead` (out of attempts on transient
            errors) or `cancelled`.
        error (None | ResultLineErrorType0 | Unset): The error (`failed`, `dead`, or the last transient one; absent
            otherwise).
        result (None | ResultLineResultType0 | Unset): The provider's output (`succeeded` only; absent otherwise).
    """

    credits_: int | None
    id: UUID
    metadata: Any
    state: JobState
    error: None | ResultLineErrorType0 | Unset = UNSET
    result: None | ResultLineResultType0 | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.result_line_error_type_0 import ResultLineErrorType0
        from ..models.result_line_result_type_0 import ResultLineResultType0

        credits_: int | None
        credits_ = self.credits_

        id = str(self.id)

        metadata = self.metadata

        state = self.state.value

        error: dict[str, Any] | None | Unset
        if isinstance(self.error, Unset):
            error = UNSET
        elif isinstance(self.error, ResultLineErrorType0):
            error = self.error.to_dict()
        else:
            error = self.error

        result: dict[str, Any] | None | Unset
        if isinstance(self.result, Unset):
            result = UNSET
        elif isinstance(self.result, ResultLineResultType0):
            result = self.result.to_dict()
        else:
            result = self.result

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "credits": credits_,
                "id": id,
                "metadata": metadata,
                "state": state,
            }
        )
        if error is not UNSET:
            field_dict["error"] = error
        if result is not UNSET:
            field_dict["result"] = result

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.result_line_error_type_0 import ResultLineErrorType0
        from ..models.result_line_result_type_0 import ResultLineResultType0

        d = dict(src_dict)

        def _parse_credits_(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        credits_ = _parse_credits_(d.pop("credits"))

        id = UUID(d.pop("id"))

        metadata = d.pop("metadata")

        state = JobState(d.pop("state"))

        def _parse_error(data: object) -> None | ResultLineErrorType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                error_type_0 = ResultLineErrorType0.from_dict(data)

                return error_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | ResultLineErrorType0 | Unset, data)

        error = _parse_error(d.pop("error", UNSET))

        def _parse_result(data: object) -> None | ResultLineResultType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                result_type_0 = ResultLineResultType0.from_dict(data)

                return result_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | ResultLineResultType0 | Unset, data)

        result = _parse_result(d.pop("result", UNSET))

        result_line = cls(
            credits_=credits_,
            id=id,
            metadata=metadata,
            state=state,
            error=error,
            result=result,
        )

        result_line.additional_properties = d
        return result_line

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

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.priority import Priority
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.json_object import JsonObject


T = TypeVar("T", bound="UpgradeRequest")


@_attrs_define
class UpgradeRequest:
    """`POST /v1/jobs/{id}/upgrade`: every field is optional, and so is the body (none is `{}`).

    Attributes:
        input_ (JsonObject | None | Unset): Fields merged over the upgraded job's input, each replacing the field of
            that name (e.g. a larger `width`): a JSON object; the merged input must be at most 65536 bytes serialised (more
            is a 413), without NUL characters. Absent or null: the job's input as it is.
        metadata (Any | Unset): Any JSON value without NUL (`\\u0000`) characters in a string or key.
        model (None | str | Unset): The model to upgrade to: a model of the price table, or `auto` with `use_case`
            (model routing). Without
            `model` and `use_case`, the job's recorded `upgrade` target (a preview's); a job without one is a 422
            `invalid_field` naming `model`.
        priority (None | Priority | Unset):
        use_case (None | str | Unset): Model routing, as `"model": "auto"` with `use_case` on `POST /v1/jobs`: the model
            is the routing table's
            for it. Given alone, it means `"model": "auto"`.
    """

    input_: JsonObject | None | Unset = UNSET
    metadata: Any | Unset = UNSET
    model: None | str | Unset = UNSET
    priority: None | Priority | Unset = UNSET
    use_case: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.json_object import JsonObject

        input_: dict[str, Any] | None | Unset
        if isinstance(self.input_, Unset):
            input_ = UNSET
        elif isinstance(self.input_, JsonObject):
            input_ = self.input_.to_dict()
        else:
            input_ = self.input_

        metadata = self.metadata

        model: None | str | Unset
        if isinstance(self.model, Unset):
            model = UNSET
        else:
            model = self.model

        priority: None | str | Unset
        if isinstance(self.priority, Unset):
            priority = UNSET
        elif isinstance(self.priority, Priority):
            priority = self.priority.value
        else:
            priority = self.priority

        use_case: None | str | Unset
        if isinstance(self.use_case, Unset):
            use_case = UNSET
        else:
            use_case = self.use_case

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if input_ is not UNSET:
            field_dict["input"] = input_
        if metadata is not UNSET:
            field_dict["metadata"] = metadata
        if model is not UNSET:
            field_dict["model"] = model
        if priority is not UNSET:
            field_dict["priority"] = priority
        if use_case is not UNSET:
            field_dict["use_case"] = use_case

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.json_object import JsonObject

        d = dict(src_dict)

        def _parse_input_(data: object) -> JsonObject | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                input_type_1 = JsonObject.from_dict(data)

                return input_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(JsonObject | None | Unset, data)

        input_ = _parse_input_(d.pop("input", UNSET))

        metadata = d.pop("metadata", UNSET)

        def _parse_model(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        model = _parse_model(d.pop("model", UNSET))

        def _parse_priority(data: object) -> None | Priority | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                priority_type_1 = Priority(data)

                return priority_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | Priority | Unset, data)

        priority = _parse_priority(d.pop("priority", UNSET))

        def _parse_use_case(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        use_case = _parse_use_case(d.pop("use_case", UNSET))

        upgrade_request = cls(
            input_=input_,
            metadata=metadata,
            model=model,
            priority=priority,
            use_case=use_case,
        )

        return upgrade_request

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.priority import Priority
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.json_object import JsonObject


T = TypeVar("T", bound="JobTemplateRequest")


@_attrs_define
class JobTemplateRequest:
    """The job each firing creates.

    Attributes:
        input_ (JsonObject): A JSON object without NUL (`\\u0000`) characters in a string or key, at any depth.
        model (str): A model of the deployment's price table (`OFFPEAK_PRICES`), or `auto` with a `use_case`.
        cache (bool | Unset): `false`: the jobs always call the provider, never answered from an identical job's result
            (for templates whose identical input should give a fresh generation each firing). Default `true`. Default: True.
        metadata (JsonObject | None | Unset): A JSON object of at most 16384 bytes serialised, without NUL characters;
            each job's gets `schedule_id`, `schedule_name` and `fire_at` added.
        priority (Priority | Unset): `low` (the default) waits for the off-peak window in the job's timezone; `normal`
            is released at once.
        use_case (None | str | Unset): With `model: "auto"` only (model routing): what the output is for, e.g.
            `thumbnail`.
        user_id (None | str | Unset): 1 to 200 characters, no NUL characters.
    """

    input_: JsonObject
    model: str
    cache: bool | Unset = True
    metadata: JsonObject | None | Unset = UNSET
    priority: Priority | Unset = UNSET
    use_case: None | str | Unset = UNSET
    user_id: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.json_object import JsonObject

        input_ = self.input_.to_dict()

        model = self.model

        cache = self.cache

        metadata: dict[str, Any] | None | Unset
        if isinstance(self.metadata, Unset):
            metadata = UNSET
        elif isinstance(self.metadata, JsonObject):
            metadata = self.metadata.to_dict()
        else:
            metadata = self.metadata

        priority: str | Unset = UNSET
        if not isinstance(self.priority, Unset):
            priority = self.priority.value

        use_case: None | str | Unset
        if isinstance(self.use_case, Unset):
            use_case = UNSET
        else:
            use_case = self.use_case

        user_id: None | str | Unset
        if isinstance(self.user_id, Unset):
            user_id = UNSET
        else:
            user_id = self.user_id

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "input": input_,
                "model": model,
            }
        )
        if cache is not UNSET:
            field_dict["cache"] = cache
        if metadata is not UNSET:
            field_dict["metadata"] = metadata
        if priority is not UNSET:
            field_dict["priority"] = priority
        if use_case is not UNSET:
            field_dict["use_case"] = use_case
        if user_id is not UNSET:
            field_dict["user_id"] = user_id

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.json_object import JsonObject

        d = dict(src_dict)
        input_ = JsonObject.from_dict(d.pop("input"))

        model = d.pop("model")

        cache = d.pop("cache", UNSET)

        def _parse_metadata(data: object) -> JsonObject | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                metadata_type_1 = JsonObject.from_dict(data)

                return metadata_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(JsonObject | None | Unset, data)

        metadata = _parse_metadata(d.pop("metadata", UNSET))

        _priority = d.pop("priority", UNSET)
        priority: Priority | Unset
        if isinstance(_priority, Unset):
            priority = UNSET
        else:
            priority = Priority(_priority)

        def _parse_use_case(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        use_case = _parse_use_case(d.pop("use_case", UNSET))

        def _parse_user_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        user_id = _parse_user_id(d.pop("user_id", UNSET))

        job_template_request = cls(
            input_=input_,
            model=model,
            cache=cache,
            metadata=metadata,
            priority=priority,
            use_case=use_case,
            user_id=user_id,
        )

        return job_template_request

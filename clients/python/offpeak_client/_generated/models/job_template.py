from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.priority import Priority

if TYPE_CHECKING:
    from ..models.job_template_input import JobTemplateInput


T = TypeVar("T", bound="JobTemplate")


@_attrs_define
class JobTemplate:
    """The job template as the API shows it.

    Attributes:
        cache (bool): Whether the jobs use the exact cache.
        input_ (JobTemplateInput):
        metadata (Any):
        model (str):
        priority (Priority): `low` (the default) waits for the off-peak window in the job's timezone; `normal` is
            released at once.
        use_case (None | str): The use case of a template submitted with `model: "auto"`; `model` is the model it was
            routed to.
        user_id (None | str):
    """

    cache: bool
    input_: JobTemplateInput
    metadata: Any
    model: str
    priority: Priority
    use_case: None | str
    user_id: None | str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cache = self.cache

        input_ = self.input_.to_dict()

        metadata = self.metadata

        model = self.model

        priority = self.priority.value

        use_case: None | str
        use_case = self.use_case

        user_id: None | str
        user_id = self.user_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "cache": cache,
                "input": input_,
                "metadata": metadata,
                "model": model,
                "priority": priority,
                "use_case": use_case,
                "user_id": user_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.job_template_input import JobTemplateInput

        d = dict(src_dict)
        cache = d.pop("cache")

        input_ = JobTemplateInput.from_dict(d.pop("input"))

        metadata = d.pop("metadata")

        model = d.pop("model")

        priority = Priority(d.pop("priority"))

        def _parse_use_case(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        use_case = _parse_use_case(d.pop("use_case"))

        def _parse_user_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        user_id = _parse_user_id(d.pop("user_id"))

        job_template = cls(
            cache=cache,
            input_=input_,
            metadata=metadata,
            model=model,
            priority=priority,
            use_case=use_case,
            user_id=user_id,
        )

        job_template.additional_properties = d
        return job_template

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

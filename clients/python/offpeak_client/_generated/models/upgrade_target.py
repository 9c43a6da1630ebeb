from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="UpgradeTarget")


@_attrs_define
class UpgradeTarget:
    """A preview's upgrade target.

    Attributes:
        model (str): The model the upgrade runs on (for a routed submission, the one its `use_case` was routed to).
        use_case (None | str): The use case of a routed submission.
    """

    model: str
    use_case: None | str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        model = self.model

        use_case: None | str
        use_case = self.use_case

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "model": model,
                "use_case": use_case,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        model = d.pop("model")

        def _parse_use_case(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        use_case = _parse_use_case(d.pop("use_case"))

        upgrade_target = cls(
            model=model,
            use_case=use_case,
        )

        upgrade_target.additional_properties = d
        return upgrade_target

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

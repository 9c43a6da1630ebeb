from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="ReadinessChecks")


@_attrs_define
class ReadinessChecks:
    """Which dependency is reachable.

    Attributes:
        postgres (bool):
        rabbitmq (bool):
    """

    postgres: bool
    rabbitmq: bool

    def to_dict(self) -> dict[str, Any]:
        postgres = self.postgres

        rabbitmq = self.rabbitmq

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "postgres": postgres,
                "rabbitmq": rabbitmq,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        postgres = d.pop("postgres")

        rabbitmq = d.pop("rabbitmq")

        readiness_checks = cls(
            postgres=postgres,
            rabbitmq=rabbitmq,
        )

        return readiness_checks

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="GroupCounts")


@_attrs_define
class GroupCounts:
    """A group's jobs counted by state.

    Attributes:
        cancelled (int):
        dead (int):
        failed (int):
        held (int):
        queued (int):
        running (int):
        succeeded (int):
        total (int):
    """

    cancelled: int
    dead: int
    failed: int
    held: int
    queued: int
    running: int
    succeeded: int
    total: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cancelled = self.cancelled

        dead = self.dead

        failed = self.failed

        held = self.held

        queued = self.queued

        running = self.running

        succeeded = self.succeeded

        total = self.total

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "cancelled": cancelled,
                "dead": dead,
                "failed": failed,
                "held": held,
                "queued": queued,
                "running": running,
                "succeeded": succeeded,
                "total": total,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        cancelled = d.pop("cancelled")

        dead = d.pop("dead")

        failed = d.pop("failed")

        held = d.pop("held")

        queued = d.pop("queued")

        running = d.pop("running")

        succeeded = d.pop("succeeded")

        total = d.pop("total")

        group_counts = cls(
            cancelled=cancelled,
            dead=dead,
            failed=failed,
            held=held,
            queued=queued,
            running=running,
            succeeded=succeeded,
            total=total,
        )

        group_counts.additional_properties = d
        return group_counts

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

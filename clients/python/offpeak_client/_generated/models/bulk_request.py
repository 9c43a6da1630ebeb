from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.bulk_request_cache_type_1 import BulkRequestCacheType1
from ..models.priority import Priority
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.json_object import JsonObject
    from ..models.preview_request import PreviewRequest


T = TypeVar("T", bound="BulkRequest")


@_attrs_define
class BulkRequest:
    """`POST /v1/jobs/bulk`.

    Attributes:
        inputs (list[JsonObject]): One input per job, each a JSON object of at most 65536 bytes serialised (more is a
            413), without NUL characters; at least 1 and at most 10000 inputs (more is a 422 `too_many_inputs`).
        model (str): A model of the deployment's price table (`OFFPEAK_PRICES`), or `auto` with a `use_case`.
        cache (bool | BulkRequestCacheType1 | Unset): As `cache` of `POST /v1/jobs`, for every job of the request.
            Default: True.
        metadata (Any | Unset): Any JSON value without NUL (`\\u0000`) characters in a string or key.
        preview (PreviewRequest | Unset): `preview` of a submission: the cheap model the job runs on, as a `model` or a
            `use_case` (routed), not both.
            An unknown one is a 422 naming `preview.model` or `preview.use_case`.
        priority (Priority | Unset): `low` (the default) waits for the off-peak window in the job's timezone; `normal`
            is released at once.
        timezone (None | str | Unset): IANA timezone whose off-peak window the jobs wait for; defaults to the tenant's.
        use_case (None | str | Unset): With `"model": "auto"` only (model routing): what the output is for, e.g.
            `thumbnail`; the model is
            the routing table's for it. An unknown use case is a 422 `unknown_use_case` listing the known ones.
        user_id (None | str | Unset): The submitter's own user, for usage per user: 1 to 200 characters, no NUL
            characters.
    """

    inputs: list[JsonObject]
    model: str
    cache: bool | BulkRequestCacheType1 | Unset = True
    metadata: Any | Unset = UNSET
    preview: PreviewRequest | Unset = UNSET
    priority: Priority | Unset = UNSET
    timezone: None | str | Unset = UNSET
    use_case: None | str | Unset = UNSET
    user_id: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        inputs = []
        for inputs_item_data in self.inputs:
            inputs_item = inputs_item_data.to_dict()
            inputs.append(inputs_item)

        model = self.model

        cache: bool | str | Unset
        if isinstance(self.cache, Unset):
            cache = UNSET
        elif isinstance(self.cache, BulkRequestCacheType1):
            cache = self.cache.value
        else:
            cache = self.cache

        metadata = self.metadata

        preview: dict[str, Any] | Unset = UNSET
        if not isinstance(self.preview, Unset):
            preview = self.preview.to_dict()

        priority: str | Unset = UNSET
        if not isinstance(self.priority, Unset):
            priority = self.priority.value

        timezone: None | str | Unset
        if isinstance(self.timezone, Unset):
            timezone = UNSET
        else:
            timezone = self.timezone

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
                "inputs": inputs,
                "model": model,
            }
        )
        if cache is not UNSET:
            field_dict["cache"] = cache
        if metadata is not UNSET:
            field_dict["metadata"] = metadata
        if preview is not UNSET:
            field_dict["preview"] = preview
        if priority is not UNSET:
            field_dict["priority"] = priority
        if timezone is not UNSET:
            field_dict["timezone"] = timezone
        if use_case is not UNSET:
            field_dict["use_case"] = use_case
        if user_id is not UNSET:
            field_dict["user_id"] = user_id

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.json_object import JsonObject
        from ..models.preview_request import PreviewRequest

        d = dict(src_dict)
        inputs = []
        _inputs = d.pop("inputs")
        for inputs_item_data in _inputs:
            inputs_item = JsonObject.from_dict(inputs_item_data)

            inputs.append(inputs_item)

        model = d.pop("model")

        def _parse_cache(data: object) -> bool | BulkRequestCacheType1 | Unset:
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                cache_type_1 = BulkRequestCacheType1(data)

                return cache_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(bool | BulkRequestCacheType1 | Unset, data)

        cache = _parse_cache(d.pop("cache", UNSET))

        metadata = d.pop("metadata", UNSET)

        _preview = d.pop("preview", UNSET)
        preview: PreviewRequest | Unset
        if isinstance(_preview, Unset):
            preview = UNSET
        else:
            preview = PreviewRequest.from_dict(_preview)

        _priority = d.pop("priority", UNSET)
        priority: Priority | Unset
        if isinstance(_priority, Unset):
            priority = UNSET
        else:
            priority = Priority(_priority)

        def _parse_timezone(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        timezone = _parse_timezone(d.pop("timezone", UNSET))

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

        bulk_request = cls(
            inputs=inputs,
            model=model,
            cache=cache,
            metadata=metadata,
            preview=preview,
            priority=priority,
            timezone=timezone,
            use_case=use_case,
            user_id=user_id,
        )

        return bulk_request

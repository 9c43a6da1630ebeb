from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.priority import Priority
from ..models.submit_request_cache_type_1 import SubmitRequestCacheType1
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.json_object import JsonObject
    from ..models.preview_request import PreviewRequest


T = TypeVar("T", bound="SubmitRequest")


@_attrs_define
class SubmitRequest:
    """`POST /v1/jobs`.

    Attributes:
        input_ (JsonObject): A JSON object without NUL (`\\u0000`) characters in a string or key, at any depth.
        model (str): A model of the deployment's price table (`OFFPEAK_PRICES`), or `auto` with a `use_case`.
        cache (bool | SubmitRequestCacheType1 | Unset): `true` (the default): the tenant's cache (`exact` unless the
            operator set it to `semantic`); `false`:
            neither answer this job from another job's result nor coalesce it with identical jobs, it always calls
            the provider; `"exact"`: the exact cache; `"semantic"`: the exact cache first, then a rewording of a
            prompt that succeeded (everything but the prompt equal, similarity at or above the threshold). Default: True.
        group (None | str | Unset): Adds the job to the tenant's group of this name (created by its first job): read the
            group with
            `GET /v1/groups/{id}` (`group_id` in the answer) and get `group.completed` when all its jobs have
            ended. 1 to 200 characters, no NUL characters. A group that has completed takes no new job (409
            `group_completed`). Example: thumbnails-2026-12-04.
        metadata (Any | Unset): Any JSON value without NUL (`\\u0000`) characters in a string or key.
        preview (PreviewRequest | Unset): `preview` of a submission: the cheap model the job runs on, as a `model` or a
            `use_case` (routed), not both.
            An unknown one is a 422 naming `preview.model` or `preview.use_case`.
        priority (Priority | Unset): `low` (the default) waits for the off-peak window in the job's timezone; `normal`
            is released at once.
        timezone (None | str | Unset): IANA timezone whose off-peak window the job waits for; defaults to the tenant's.
        use_case (None | str | Unset): With `"model": "auto"` only (model routing): what the output is for, e.g.
            `thumbnail`; the model is
            the routing table's for it. An unknown use case is a 422 `unknown_use_case` listing the known ones.
        user_id (None | str | Unset): The submitter's own user, for usage per user: 1 to 200 characters, no NUL
            characters.
    """

    input_: JsonObject
    model: str
    cache: bool | SubmitRequestCacheType1 | Unset = True
    group: None | str | Unset = UNSET
    metadata: Any | Unset = UNSET
    preview: PreviewRequest | Unset = UNSET
    priority: Priority | Unset = UNSET
    timezone: None | str | Unset = UNSET
    use_case: None | str | Unset = UNSET
    user_id: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        input_ = self.input_.to_dict()

        model = self.model

        cache: bool | str | Unset
        if isinstance(self.cache, Unset):
            cache = UNSET
        elif isinstance(self.cache, SubmitRequestCacheType1):
            cache = self.cache.value
        else:
            cache = self.cache

        group: None | str | Unset
        if isinstance(self.group, Unset):
            group = UNSET
        else:
            group = self.group

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
                "input": input_,
                "model": model,
            }
        )
        if cache is not UNSET:
            field_dict["cache"] = cache
        if group is not UNSET:
            field_dict["group"] = group
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
        input_ = JsonObject.from_dict(d.pop("input"))

        model = d.pop("model")

        def _parse_cache(data: object) -> bool | SubmitRequestCacheType1 | Unset:
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                cache_type_1 = SubmitRequestCacheType1(data)

                return cache_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(bool | SubmitRequestCacheType1 | Unset, data)

        cache = _parse_cache(d.pop("cache", UNSET))

        def _parse_group(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        group = _parse_group(d.pop("group", UNSET))

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

        submit_request = cls(
            input_=input_,
            model=model,
            cache=cache,
            group=group,
            metadata=metadata,
            preview=preview,
            priority=priority,
            timezone=timezone,
            use_case=use_case,
            user_id=user_id,
        )

        return submit_request

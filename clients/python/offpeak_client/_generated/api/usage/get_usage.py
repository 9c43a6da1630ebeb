from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.usage_group_by import UsageGroupBy
from ...models.usage_response import UsageResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    start: Any | Unset = UNSET,
    end: Any | Unset = UNSET,
    group_by: UsageGroupBy | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    json_start: Any | Unset
    if isinstance(start, Unset):
        json_start = UNSET
    else:
        json_start = start
    params["start"] = json_start

    json_end: Any | Unset
    if isinstance(end, Unset):
        json_end = UNSET
    else:
        json_end = end
    params["end"] = json_end

    json_group_by: str | Unset = UNSET
    if not isinstance(group_by, Unset):
        json_group_by = group_by.value

    params["group_by"] = json_group_by

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/usage",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorBody | UsageResponse | None:
    if response.status_code == 200:
        response_200 = UsageResponse.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = ErrorBody.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 500:
        response_500 = ErrorBody.from_dict(response.json())

        return response_500

    if response.status_code == 503:
        response_503 = ErrorBody.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorBody | UsageResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    start: Any | Unset = UNSET,
    end: Any | Unset = UNSET,
    group_by: UsageGroupBy | Unset = UNSET,
) -> Response[ErrorBody | UsageResponse]:
    """Requests, credits and savings per model, day, user or provider, from the usage ledger

    Args:
        start (Any | Unset):
        end (Any | Unset):
        group_by (UsageGroupBy | Unset): What usage is grouped by: `model` (the default), `day`,
            `user` or `provider`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | UsageResponse]
    """

    kwargs = _get_kwargs(
        start=start,
        end=end,
        group_by=group_by,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    start: Any | Unset = UNSET,
    end: Any | Unset = UNSET,
    group_by: UsageGroupBy | Unset = UNSET,
) -> ErrorBody | UsageResponse | None:
    """Requests, credits and savings per model, day, user or provider, from the usage ledger

    Args:
        start (Any | Unset):
        end (Any | Unset):
        group_by (UsageGroupBy | Unset): What usage is grouped by: `model` (the default), `day`,
            `user` or `provider`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | UsageResponse
    """

    return sync_detailed(
        client=client,
        start=start,
        end=end,
        group_by=group_by,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    start: Any | Unset = UNSET,
    end: Any | Unset = UNSET,
    group_by: UsageGroupBy | Unset = UNSET,
) -> Response[ErrorBody | UsageResponse]:
    """Requests, credits and savings per model, day, user or provider, from the usage ledger

    Args:
        start (Any | Unset):
        end (Any | Unset):
        group_by (UsageGroupBy | Unset): What usage is grouped by: `model` (the default), `day`,
            `user` or `provider`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | UsageResponse]
    """

    kwargs = _get_kwargs(
        start=start,
        end=end,
        group_by=group_by,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    start: Any | Unset = UNSET,
    end: Any | Unset = UNSET,
    group_by: UsageGroupBy | Unset = UNSET,
) -> ErrorBody | UsageResponse | None:
    """Requests, credits and savings per model, day, user or provider, from the usage ledger

    Args:
        start (Any | Unset):
        end (Any | Unset):
        group_by (UsageGroupBy | Unset): What usage is grouped by: `model` (the default), `day`,
            `user` or `provider`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | UsageResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            start=start,
            end=end,
            group_by=group_by,
        )
    ).parsed

import datetime
from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.next_window import NextWindow
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    timezone: str | Unset = UNSET,
    at: datetime.datetime | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["timezone"] = timezone

    json_at: str | Unset = UNSET
    if not isinstance(at, Unset):
        json_at = at.isoformat()
    params["at"] = json_at

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/windows/next",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorBody | NextWindow | None:
    if response.status_code == 200:
        response_200 = NextWindow.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = ErrorBody.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 422:
        response_422 = ErrorBody.from_dict(response.json())

        return response_422

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
) -> Response[ErrorBody | NextWindow]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    timezone: str | Unset = UNSET,
    at: datetime.datetime | Unset = UNSET,
) -> Response[ErrorBody | NextWindow]:
    """When would a low-priority job submitted at `at` run?

    Args:
        timezone (str | Unset): An IANA timezone name, such as `Europe/Berlin`.
        at (datetime.datetime | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | NextWindow]
    """

    kwargs = _get_kwargs(
        timezone=timezone,
        at=at,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    timezone: str | Unset = UNSET,
    at: datetime.datetime | Unset = UNSET,
) -> ErrorBody | NextWindow | None:
    """When would a low-priority job submitted at `at` run?

    Args:
        timezone (str | Unset): An IANA timezone name, such as `Europe/Berlin`.
        at (datetime.datetime | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | NextWindow
    """

    return sync_detailed(
        client=client,
        timezone=timezone,
        at=at,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    timezone: str | Unset = UNSET,
    at: datetime.datetime | Unset = UNSET,
) -> Response[ErrorBody | NextWindow]:
    """When would a low-priority job submitted at `at` run?

    Args:
        timezone (str | Unset): An IANA timezone name, such as `Europe/Berlin`.
        at (datetime.datetime | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | NextWindow]
    """

    kwargs = _get_kwargs(
        timezone=timezone,
        at=at,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    timezone: str | Unset = UNSET,
    at: datetime.datetime | Unset = UNSET,
) -> ErrorBody | NextWindow | None:
    """When would a low-priority job submitted at `at` run?

    Args:
        timezone (str | Unset): An IANA timezone name, such as `Europe/Berlin`.
        at (datetime.datetime | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | NextWindow
    """

    return (
        await asyncio_detailed(
            client=client,
            timezone=timezone,
            at=at,
        )
    ).parsed

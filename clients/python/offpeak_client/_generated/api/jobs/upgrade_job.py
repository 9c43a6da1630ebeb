from http import HTTPStatus
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.job_view import JobView
from ...models.upgrade_request import UpgradeRequest
from ...types import UNSET, Response, Unset


def _get_kwargs(
    id: UUID,
    *,
    body: UpgradeRequest | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/jobs/{id}/upgrade".format(
            id=quote(str(id), safe=""),
        ),
    }

    if not isinstance(body, Unset):
        _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorBody | JobView | None:
    if response.status_code == 200:
        response_200 = JobView.from_dict(response.json())

        return response_200

    if response.status_code == 201:
        response_201 = JobView.from_dict(response.json())

        return response_201

    if response.status_code == 400:
        response_400 = ErrorBody.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = ErrorBody.from_dict(response.json())

        return response_404

    if response.status_code == 409:
        response_409 = ErrorBody.from_dict(response.json())

        return response_409

    if response.status_code == 413:
        response_413 = ErrorBody.from_dict(response.json())

        return response_413

    if response.status_code == 422:
        response_422 = ErrorBody.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = ErrorBody.from_dict(response.json())

        return response_429

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
) -> Response[ErrorBody | JobView]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    id: UUID,
    *,
    client: AuthenticatedClient,
    body: UpgradeRequest | Unset = UNSET,
) -> Response[ErrorBody | JobView]:
    """Make the full-quality job from a succeeded one (a preview), once

     Creates a job (a child, with `parent_id`) from a succeeded job of the tenant: on the body's `model`
    or `use_case`, or else the job's recorded `upgrade` target (a job submitted with `preview`); with
    the job's input, the body's `input` fields merged over it; the job's timezone and `user_id`; the
    body's `metadata` or the job's; `low` priority unless the body says otherwise. The child goes
    through the same checks, daily limits, exact cache and prices as a submitted job. The same upgrade
    again (the same job and body, compared as JSON: key order and whitespace aside) answers the child it
    made with 200, also when both are sent at once: a double click costs once. Another body makes
    another child.

    Args:
        id (UUID):
        body (UpgradeRequest | Unset): `POST /v1/jobs/{id}/upgrade`: every field is optional, and
            so is the body (none is `{}`).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | JobView]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    id: UUID,
    *,
    client: AuthenticatedClient,
    body: UpgradeRequest | Unset = UNSET,
) -> ErrorBody | JobView | None:
    """Make the full-quality job from a succeeded one (a preview), once

     Creates a job (a child, with `parent_id`) from a succeeded job of the tenant: on the body's `model`
    or `use_case`, or else the job's recorded `upgrade` target (a job submitted with `preview`); with
    the job's input, the body's `input` fields merged over it; the job's timezone and `user_id`; the
    body's `metadata` or the job's; `low` priority unless the body says otherwise. The child goes
    through the same checks, daily limits, exact cache and prices as a submitted job. The same upgrade
    again (the same job and body, compared as JSON: key order and whitespace aside) answers the child it
    made with 200, also when both are sent at once: a double click costs once. Another body makes
    another child.

    Args:
        id (UUID):
        body (UpgradeRequest | Unset): `POST /v1/jobs/{id}/upgrade`: every field is optional, and
            so is the body (none is `{}`).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | JobView
    """

    return sync_detailed(
        id=id,
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    id: UUID,
    *,
    client: AuthenticatedClient,
    body: UpgradeRequest | Unset = UNSET,
) -> Response[ErrorBody | JobView]:
    """Make the full-quality job from a succeeded one (a preview), once

     Creates a job (a child, with `parent_id`) from a succeeded job of the tenant: on the body's `model`
    or `use_case`, or else the job's recorded `upgrade` target (a job submitted with `preview`); with
    the job's input, the body's `input` fields merged over it; the job's timezone and `user_id`; the
    body's `metadata` or the job's; `low` priority unless the body says otherwise. The child goes
    through the same checks, daily limits, exact cache and prices as a submitted job. The same upgrade
    again (the same job and body, compared as JSON: key order and whitespace aside) answers the child it
    made with 200, also when both are sent at once: a double click costs once. Another body makes
    another child.

    Args:
        id (UUID):
        body (UpgradeRequest | Unset): `POST /v1/jobs/{id}/upgrade`: every field is optional, and
            so is the body (none is `{}`).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | JobView]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    id: UUID,
    *,
    client: AuthenticatedClient,
    body: UpgradeRequest | Unset = UNSET,
) -> ErrorBody | JobView | None:
    """Make the full-quality job from a succeeded one (a preview), once

     Creates a job (a child, with `parent_id`) from a succeeded job of the tenant: on the body's `model`
    or `use_case`, or else the job's recorded `upgrade` target (a job submitted with `preview`); with
    the job's input, the body's `input` fields merged over it; the job's timezone and `user_id`; the
    body's `metadata` or the job's; `low` priority unless the body says otherwise. The child goes
    through the same checks, daily limits, exact cache and prices as a submitted job. The same upgrade
    again (the same job and body, compared as JSON: key order and whitespace aside) answers the child it
    made with 200, also when both are sent at once: a double click costs once. Another body makes
    another child.

    Args:
        id (UUID):
        body (UpgradeRequest | Unset): `POST /v1/jobs/{id}/upgrade`: every field is optional, and
            so is the body (none is `{}`).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | JobView
    """

    return (
        await asyncio_detailed(
            id=id,
            client=client,
            body=body,
        )
    ).parsed

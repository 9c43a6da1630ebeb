"""offpeak-client: the Python client of offpeak, the job queue that holds paid
AI-generation jobs until the off-peak window.

    from offpeak_client import Offpeak

    with Offpeak(api_key="op_...", base_url="https://offpeak.example.com") as offpeak:
        job = offpeak.jobs.submit("flux-schnell", {"prompt": "a lighthouse at dawn"})

The models and request builders are generated from the API's OpenAPI document
(``offpeak_client._generated``, never edited by hand); this package adds what a generator
cannot know: the API key, retries honouring ``Retry-After``, an ``Idempotency-Key`` on every
submission, typed errors, cursor pagination as iterators, the JSON Lines results stream, and
webhook signature verification.
"""

from . import models
from ._client import DEFAULT_BASE_URL, AsyncOffpeak, Offpeak
from ._generated.types import UNSET, Unset
from ._ops import TERMINAL_STATES
from ._version import __version__
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    OffpeakError,
    PayloadTooLargeError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TruncatedStreamError,
    UnprocessableEntityError,
    WebhookVerificationError,
)
from .models import (
    BulkResponse,
    CatchUp,
    DeliveryView,
    GroupView,
    JobState,
    JobTemplateRequest,
    JobView,
    NextWindow,
    Priority,
    ResultLine,
    Schedule,
    TenantView,
    UsageGroupBy,
    UsageResponse,
    WebhookCreated,
    WebhookEventName,
    WebhookView,
)
from .retry import AsyncRetryTransport, RetryPolicy, RetryTransport
from .webhooks import sign_webhook, verify_webhook

__all__ = [  # noqa: RUF022 (grouped by kind)
    "__version__",
    "Offpeak",
    "AsyncOffpeak",
    "DEFAULT_BASE_URL",
    "RetryPolicy",
    "RetryTransport",
    "AsyncRetryTransport",
    "verify_webhook",
    "sign_webhook",
    "models",
    "UNSET",
    "Unset",
    "TERMINAL_STATES",
    # errors
    "OffpeakError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "QuotaExceededError",
    "ServerError",
    "ServiceUnavailableError",
    "TruncatedStreamError",
    "WebhookVerificationError",
    # the models used most (all of them: offpeak_client.models)
    "BulkResponse",
    "CatchUp",
    "DeliveryView",
    "GroupView",
    "JobState",
    "JobTemplateRequest",
    "JobView",
    "NextWindow",
    "Priority",
    "ResultLine",
    "Schedule",
    "TenantView",
    "UsageGroupBy",
    "UsageResponse",
    "WebhookCreated",
    "WebhookEventName",
    "WebhookView",
]

"""Contains all the data models used in inputs/outputs"""

from .attempt_view import AttemptView
from .bulk_request import BulkRequest
from .bulk_request_cache_type_1 import BulkRequestCacheType1
from .bulk_response import BulkResponse
from .cache_kind import CacheKind
from .cache_mode import CacheMode
from .catch_up import CatchUp
from .create_schedule_request import CreateScheduleRequest
from .create_webhook import CreateWebhook
from .delivery_list import DeliveryList
from .delivery_view import DeliveryView
from .error_body import ErrorBody
from .error_detail import ErrorDetail
from .error_detail_details import ErrorDetailDetails
from .fire_time import FireTime
from .firing import Firing
from .group_counts import GroupCounts
from .group_view import GroupView
from .health import Health
from .health_status import HealthStatus
from .job_state import JobState
from .job_template import JobTemplate
from .job_template_input import JobTemplateInput
from .job_template_request import JobTemplateRequest
from .job_view import JobView
from .job_view_input import JobViewInput
from .json_object import JsonObject
from .list_response import ListResponse
from .next_window import NextWindow
from .openapi_response_200 import OpenapiResponse200
from .patch_schedule_request import PatchScheduleRequest
from .preview_request import PreviewRequest
from .priority import Priority
from .quota_view import QuotaView
from .readiness import Readiness
from .readiness_checks import ReadinessChecks
from .readiness_status import ReadinessStatus
from .result_line import ResultLine
from .result_line_error_type_0 import ResultLineErrorType0
from .result_line_result_type_0 import ResultLineResultType0
from .schedule import Schedule
from .schedule_list import ScheduleList
from .secret_rotated import SecretRotated
from .submit_request import SubmitRequest
from .submit_request_cache_type_1 import SubmitRequestCacheType1
from .tenant_view import TenantView
from .today_usage import TodayUsage
from .update_webhook import UpdateWebhook
from .upgrade_request import UpgradeRequest
from .upgrade_target import UpgradeTarget
from .usage_group import UsageGroup
from .usage_group_by import UsageGroupBy
from .usage_response import UsageResponse
from .usage_response_groups import UsageResponseGroups
from .webhook_created import WebhookCreated
from .webhook_event_name import WebhookEventName
from .webhook_list import WebhookList
from .webhook_view import WebhookView

__all__ = (
    "AttemptView",
    "BulkRequest",
    "BulkRequestCacheType1",
    "BulkResponse",
    "CacheKind",
    "CacheMode",
    "CatchUp",
    "CreateScheduleRequest",
    "CreateWebhook",
    "DeliveryList",
    "DeliveryView",
    "ErrorBody",
    "ErrorDetail",
    "ErrorDetailDetails",
    "FireTime",
    "Firing",
    "GroupCounts",
    "GroupView",
    "Health",
    "HealthStatus",
    "JobState",
    "JobTemplate",
    "JobTemplateInput",
    "JobTemplateRequest",
    "JobView",
    "JobViewInput",
    "JsonObject",
    "ListResponse",
    "NextWindow",
    "OpenapiResponse200",
    "PatchScheduleRequest",
    "PreviewRequest",
    "Priority",
    "QuotaView",
    "Readiness",
    "ReadinessChecks",
    "ReadinessStatus",
    "ResultLine",
    "ResultLineErrorType0",
    "ResultLineResultType0",
    "Schedule",
    "ScheduleList",
    "SecretRotated",
    "SubmitRequest",
    "SubmitRequestCacheType1",
    "TenantView",
    "TodayUsage",
    "UpdateWebhook",
    "UpgradeRequest",
    "UpgradeTarget",
    "UsageGroup",
    "UsageGroupBy",
    "UsageResponse",
    "UsageResponseGroups",
    "WebhookCreated",
    "WebhookEventName",
    "WebhookList",
    "WebhookView",
)

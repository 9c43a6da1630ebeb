"""The API's models: every generated attrs model of ``offpeak_client._generated.models``
(whatever the document defines, so this module follows regeneration), and friendlier names
for the ones used most (``Job`` is ``JobView``, ...).

Generated models carry ``to_dict()`` and ``from_dict()``; their fields named after Python
builtins get a trailing underscore, as the generator names them: ``JobView.input_``,
``JobView.credits_``, ``GroupView.credits_``.
"""

from ._generated import models as _models
from ._generated.models import *
from ._generated.models import (
    BulkResponse,
    DeliveryList,
    DeliveryView,
    GroupView,
    JobView,
    ListResponse,
    NextWindow,
    ResultLine,
    ScheduleList,
    TenantView,
    UsageResponse,
    WebhookView,
)
from ._generated.types import UNSET, Unset

Job = JobView
JobPage = ListResponse
BulkResult = BulkResponse
Group = GroupView
GroupResult = ResultLine
SchedulePage = ScheduleList
Webhook = WebhookView
Delivery = DeliveryView
DeliveryPage = DeliveryList
Tenant = TenantView
Usage = UsageResponse
Window = NextWindow

__all__ = [  # noqa: PLE0604 (the generated models' names, whatever the document defines)
    *_models.__all__,
    "Job",
    "JobPage",
    "BulkResult",
    "Group",
    "GroupResult",
    "SchedulePage",
    "Webhook",
    "Delivery",
    "DeliveryPage",
    "Tenant",
    "Usage",
    "Window",
    "UNSET",
    "Unset",
]

from enum import StrEnum


class WebhookEventName(StrEnum):
    GROUP_COMPLETED = "group.completed"
    JOB_CANCELLED = "job.cancelled"
    JOB_DEAD = "job.dead"
    JOB_FAILED = "job.failed"
    JOB_SUCCEEDED = "job.succeeded"

    def __str__(self) -> str:
        return str(self.value)

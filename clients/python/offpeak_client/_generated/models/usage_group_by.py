from enum import StrEnum


class UsageGroupBy(StrEnum):
    DAY = "day"
    MODEL = "model"
    PROVIDER = "provider"
    USER = "user"

    def __str__(self) -> str:
        return str(self.value)

from enum import StrEnum


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"

    def __str__(self) -> str:
        return str(self.value)

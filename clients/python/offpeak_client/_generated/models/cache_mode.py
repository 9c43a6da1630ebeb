from enum import StrEnum


class CacheMode(StrEnum):
    EXACT = "exact"
    OFF = "off"
    SEMANTIC = "semantic"

    def __str__(self) -> str:
        return str(self.value)

from enum import StrEnum


class CacheKind(StrEnum):
    EXACT = "exact"
    SEMANTIC = "semantic"

    def __str__(self) -> str:
        return str(self.value)

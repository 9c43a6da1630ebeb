from enum import StrEnum


class BulkRequestCacheType1(StrEnum):
    EXACT = "exact"
    SEMANTIC = "semantic"

    def __str__(self) -> str:
        return str(self.value)

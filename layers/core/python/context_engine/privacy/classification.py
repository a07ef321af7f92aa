"""Data classification labels for tenants and agents."""

from __future__ import annotations

from enum import StrEnum


class DataClassification(StrEnum):
    """How sensitive a tenant's or agent's data is; ordered from least to most sensitive.

    Members compare by sensitivity (``RESTRICTED > INTERNAL``) so a caller can ask
    "at least confidential?" without a lookup table of its own.
    """

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, DataClassification):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, DataClassification):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, DataClassification):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, DataClassification):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def most_restrictive(cls, *labels: DataClassification) -> DataClassification:
        """The stricter label wins, e.g. for an agent inside a tenant with its own label."""
        if not labels:
            raise ValueError("at least one classification is required")
        return max(labels, key=lambda label: label.rank)


_ORDER: tuple[DataClassification, ...] = tuple(DataClassification)

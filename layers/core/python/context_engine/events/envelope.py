"""The event envelope shared by EventBridge and the in-process bus.

On EventBridge: ``Source`` = settings.event_source, ``DetailType`` = ``detail_type``,
``Detail`` = the JSON of this envelope's ``detail`` plus ``event_id`` and ``tenant_id``
so consumers can deduplicate and scope without parsing anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, Field


class EventEnvelope(BaseModel):
    event_id: UUID = Field(default_factory=uuid4)
    detail_type: str
    tenant_id: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    detail: dict[str, Any] = Field(default_factory=dict)

    def eventbridge_detail(self) -> dict[str, Any]:
        return {"event_id": str(self.event_id), "tenant_id": self.tenant_id, **self.detail}

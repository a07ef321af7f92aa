"""The EventBridge bus the write path publishes domain events to.

Rules, queues and consumers are the pipeline construct's concern; it receives this bus.
An archive keeps 14 days of our events so a consumer bug can be fixed and the events
replayed (EventBridge ``StartReplay``) instead of lost.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from constructs import Construct

from context_engine.settings import Settings

# The source the publishers stamp on every event (Settings.event_source, not overridden in AWS).
EVENT_SOURCE: str = Settings.model_fields["event_source"].default


class EventBus(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, archive_days: int = 14) -> None:
        super().__init__(scope, construct_id)
        self.source = EVENT_SOURCE
        self.bus = events.EventBus(self, "Bus", description="Context Engine domain events")
        self.bus.archive(
            "Archive",
            description="Domain events, for replay after a consumer fix",
            event_pattern=events.EventPattern(source=[self.source]),
            retention=Duration.days(archive_days),
        )

"""Topic ``inbox.presence.v1``: agent sign-in / sign-out transitions, produced by presence."""

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, ConfigDict, Field

from inbox_contracts.envelope import EventData


class SignOutReason(StrEnum):
    EXPLICIT = "explicit"
    """The agent signed out (their last live session)."""
    EXPIRED = "expired"
    """Heartbeats of the last live session stopped for longer than the session timeout."""
    FORCED = "forced"
    """An admin force-signed-out the agent."""


class Availability(StrEnum):
    AVAILABLE = "available"
    AWAY = "away"


class AgentSignedIn(EventData):
    """The agent went from no live session to one."""

    event_type: ClassVar[str] = "inbox.presence.agent_signed_in.v1"
    subject_field: ClassVar[str] = "agent_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "agent_id": "agent-ana",
                    "session_id": "5f0c1e7a-3f7e-4b7c-9c55-0d8a3c2b1e01",
                    "teams": ["team-billing"],
                    "occurred_at": "2026-11-25T09:00:00Z",
                }
            ]
        }
    )

    agent_id: str = Field(min_length=1, description="The agent who signed in.")
    session_id: str = Field(min_length=1, description="The session whose start made it so.")
    teams: list[str] = Field(
        default_factory=list,
        description="The agent's teams at sign-in (the token's `teams` claim). Added in v1 "
        "additively: older producers omit it (read as no teams). Routing's automatic "
        "assignment uses it for team membership.",
    )


class AgentSignedOut(EventData):
    """The agent went from at least one live session to none."""

    event_type: ClassVar[str] = "inbox.presence.agent_signed_out.v1"
    subject_field: ClassVar[str] = "agent_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "agent_id": "agent-ana",
                    "session_id": "5f0c1e7a-3f7e-4b7c-9c55-0d8a3c2b1e01",
                    "reason": "expired",
                    "occurred_at": "2026-11-25T17:31:05Z",
                }
            ]
        }
    )

    agent_id: str = Field(min_length=1, description="The agent who signed out.")
    session_id: str = Field(min_length=1, description="The last session to end.")
    reason: SignOutReason = Field(
        description="explicit, expired or forced. For `expired`, `occurred_at` is the last "
        "heartbeat plus the session timeout, not when the expiry was noticed."
    )


class AgentAvailabilityChanged(EventData):
    """The agent set Available / Away. Never counts as signing out."""

    event_type: ClassVar[str] = "inbox.presence.availability_changed.v1"
    subject_field: ClassVar[str] = "agent_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "agent_id": "agent-ana",
                    "availability": "away",
                    "occurred_at": "2026-11-25T12:00:00Z",
                }
            ]
        }
    )

    agent_id: str = Field(
        min_length=1, description="The agent (Kafka key and CloudEvents subject)."
    )
    availability: Availability = Field(description="available or away.")


PROGRESS_ORG_ID = "_all"
"""``org_id`` of a progress mark: marks are about a partition, not about one tenant."""


class PresenceProgressed(EventData):
    """Progress mark: presence has appended to this partition every transition it will ever
    publish there with ``occurred_at`` <= ``watermark``.

    The exact rule: every ``AgentSignedIn``, ``AgentSignedOut`` and
    ``AgentAvailabilityChanged`` that presence publishes on this partition *after* this mark
    (at a higher offset) has ``occurred_at`` > ``watermark``, including expiries, whose
    ``occurred_at`` (last heartbeat + timeout) is in the past when they are published. A
    re-publish of an event appended before the mark (same event id) may follow it. The only
    exceptions need a presence process killed in the middle of a transition (between ending a
    session and recording its sign-out, or between storing a session and recording its
    sign-in): that transition is then published later, by another replica, with its original
    ``occurred_at``, possibly behind a mark.

    Published by presence to an explicit partition of ``inbox.presence.v1`` (key = the
    partition number as text), also while idle (at least every 50 ms per partition), so that a
    consumer knows how far event time on that partition is final. ``occurred_at`` equals
    ``watermark``. Marks of one partition never go backwards in a consumer's view if it keeps
    the maximum it has seen. Not tenant-scoped: ``org_id`` is always ``_all``. Consumers that
    do not track event-time progress ignore this type.
    """

    event_type: ClassVar[str] = "inbox.presence.progress.v1"
    subject_field: ClassVar[str] = "partition_key"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "_all",
                    "partition_key": "3",
                    "partition": 3,
                    "watermark": "2026-11-25T09:00:00.250Z",
                    "occurred_at": "2026-11-25T09:00:00.250Z",
                }
            ]
        }
    )

    partition_key: str = Field(
        min_length=1, description="The partition number as text (CloudEvents subject, key)."
    )
    partition: int = Field(ge=0, description="Partition of inbox.presence.v1 this mark is on.")
    watermark: AwareDatetime = Field(
        description="Every transition with occurred_at <= watermark bound for this partition "
        "was appended to it before this mark: anything presence appends later has occurred_at "
        "> watermark (except after a crash mid-transition, see the type's description)."
    )

    @classmethod
    def at(cls, partition: int, watermark: datetime) -> "PresenceProgressed":
        """The mark of ``partition`` at ``watermark`` (its fields follow from the two)."""
        return cls(
            org_id=PROGRESS_ORG_ID,
            partition_key=str(partition),
            partition=partition,
            watermark=watermark,
            occurred_at=watermark,
        )

"""Configuration of the routing service (env prefix ``ROUTING_``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from inbox_kit.settings import ServiceSettings, service_config
from pydantic import Field, field_validator

ROLES = ("owner", "dispatcher")


class RoutingSettings(ServiceSettings):
    model_config = service_config("ROUTING_")

    service_name: str = "routing"
    mongodb_database: str = "inbox_routing"
    grpc_port: int = Field(7062, ge=0, le=65535)
    metrics_port: int = Field(9462, ge=0, le=65535)
    consumer_group: str = Field("routing", description="Group of the conversation owners.")
    presence_consumer_group: str = Field(
        "routing-presence", description="Group of the presence timeline recorders."
    )
    roles: str = Field(
        "owner,dispatcher",
        description="Which of routing's consumer roles this process runs, comma-separated: "
        "`owner` (the conversation owners, routing's presence consumer, the read-model writer, "
        "compaction and pruning) and `dispatcher` (automatic assignment's dispatcher). Default "
        "both; a deployment may run the dispatcher group in processes/replicas of its own "
        "(`dispatcher`) beside owner-only ones (`owner`). Every process serves gRPC.",
    )
    dispatcher_consumer_group: str = Field(
        "routing-dispatcher",
        description="Group of the automatic-assignment dispatchers (one writer per org).",
    )
    dispatch_snapshot_seconds: float = Field(
        5.0, gt=0, description="How often the dispatcher snapshots its state (bounds replay)."
    )
    dispatch_commit_seconds: float = Field(
        1.0,
        ge=0,
        description="How often the dispatcher commits its consumed offsets (0: after every "
        "batch). It always resumes from its snapshot, so the committed offsets only serve "
        "broker-side lag monitoring, at most this far behind.",
    )
    dispatch_batched_changes: bool = Field(
        True,
        description="Owners send the dispatcher their conversations' changes of a batch as one "
        "record per org (ConversationsDispatchChanged, up to 500 changes) instead of one "
        "ConversationDispatchChanged each. Dispatchers read both. Upgrading from a version "
        "whose dispatchers read only the single ones: set false until every instance runs "
        "this version, then back to true.",
    )
    initial_offset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a consumer group without committed offsets starts. Production: "
        "earliest (nothing is missed); tests on a shared broker: latest. Resolved once per "
        "partition: its first owner commits that start, so a later owner starts there too.",
    )
    batch_max_records: int = Field(1000, ge=1, description="Records per consumed batch.")
    owner_batch_target_ms: int = Field(
        0,
        ge=0,
        description="The conversation owner's batches aim at this handling time while it "
        "keeps up (records per batch = its observed rate x this, at least "
        "ROUTING_OWNER_BATCH_MIN_RECORDS); only while its backlog grows although batches are "
        "full, more than one ROUTING_BATCH_MAX_RECORDS batch is queued, or every batch has "
        "been full for 1 s, does it take up to ROUTING_BATCH_MAX_RECORDS. 0 (the default: "
        "at 100 the quiet-machine A/B gained sustained rate but lost latency at half of it, "
        "see the README): always up to ROUTING_BATCH_MAX_RECORDS.",
    )
    owner_batch_min_records: int = Field(
        250, ge=1, description="Fewest records an owner batch is sized to (see the target)."
    )
    allowed_lateness_ms: int = Field(
        500,
        ge=0,
        description="Allowed lateness L of the messages and conversations topics (and of "
        "presence while it publishes no progress marks): a decision at event time t is taken "
        "once those inputs have progressed past t; an event later than L may find it taken.",
    )
    presence_mark_timeout_ms: int = Field(
        1000,
        ge=1,
        description="A presence partition without a progress mark for this long falls back to "
        "the time routing's presence consumer is complete as of - allowed lateness as its "
        "progress (presence down or not publishing marks).",
    )
    progress_tick_ms: int = Field(
        20,
        ge=1,
        description="How often the owner takes decisions that became final, and the presence "
        "consumer relays presence progress, when no batch arrives (a batch with progress "
        "marks is relayed as soon as it is recorded).",
    )
    session_timeout_ms: int = Field(
        3000,
        ge=1000,
        description="Kafka consumer session timeout: a killed instance's partitions move to "
        "the others after at most this long (recovery after kill -9 measured 4.6-5.1 s with "
        "3000, 9.2 s with 6000). Brokers refuse values below their "
        "group.min.session.timeout.ms: the devstack broker allows 1000, a stock broker's "
        "default is 6000, so set 6000 there (or lower the broker's floor). Shorter sessions "
        "evict an instance whose event loop stalls longer than this (the take-over yields "
        "every 500 conversations).",
    )
    heartbeat_interval_ms: int = Field(
        500, ge=100, description="Kafka consumer heartbeat interval (< session timeout / 3)."
    )

    compaction_lag_seconds: float = Field(
        900,
        ge=0,
        description="Compaction horizon H = progress - allowed lateness - this lag: events and "
        "decisions stamped at or before H are folded into the conversation's snapshot and "
        "their journal entries deleted; a conversation event stamped at or before its "
        "conversation's H is refused (dead-lettered, x-dlq-reason=refused).",
    )
    compaction_interval_seconds: float = Field(
        5.0, gt=0, description="How often the owner compacts (bounded work per run)."
    )
    owner_max_conversations: int = Field(
        50_000,
        ge=0,
        description="Conversations the owner keeps in memory beyond those it must (events "
        "after the horizon, NEW and assigned, a decision due); the least recently used "
        "others are evicted and loaded again by exact _id when needed.",
    )

    decision_retention_hours: float = Field(
        24,
        gt=0,
        description="How long a decision (and its published mark) is kept after it was folded "
        "into its conversation's snapshot, counted from its event time; then deleted (TTL "
        "index on MongoDB, the pruning task on FerretDB). The snapshot's audit trail keeps "
        "its decision id, reason and cause.",
    )
    presence_timeline_retention_hours: float = Field(
        24,
        gt=0,
        description="How much of an agent's sign-in/sign-out history routing keeps, counted "
        "back from the agent's newest transition: older transitions are deleted as new ones "
        "are recorded, except the last one before that cut (the agent's state there). Must "
        "exceed the longest time a conversation goes without compaction (seconds normally): "
        "a fold of events older than the kept history sees the agent as of its oldest kept "
        "transition.",
    )
    settings_history_retention_hours: float = Field(
        24,
        gt=0,
        description="How much of an org's history of the remove-assignment setting routing "
        "keeps, counted back from its newest change: older changes are deleted as new ones "
        "are made, except the last one before that cut (the setting's value there). Same rule "
        "as the presence timelines: a fold of events older than the kept history sees the "
        "setting as of its oldest kept change.",
    )
    retention_interval_seconds: float = Field(
        60, gt=0, description="How often the pruning task runs."
    )
    retention_batch: int = Field(
        640,
        ge=1,
        description="Decisions, and archived audit segments, the pruning task deletes per run "
        "at most (each).",
    )
    audit_view_entries: int = Field(
        100,
        ge=1,
        description="Most recent audit entries of a conversation always kept in its view "
        "(and snapshot), whatever their age. Once it holds twice as many, compaction moves "
        "the older ones to an archive segment (still served by GetAuditTrail).",
    )
    audit_retention_days: float = Field(
        90,
        gt=0,
        description="How long an archived audit segment is kept after the event time of its "
        "last entry; then GetAuditTrail skips it and it is deleted (TTL index on MongoDB, the "
        "pruning task on FerretDB). Page tokens stay valid across archiving and expiry.",
    )

    @property
    def allowed_lateness(self) -> timedelta:
        return timedelta(milliseconds=self.allowed_lateness_ms)

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        roles = [r.strip() for r in value.split(",") if r.strip()]
        unknown = sorted(set(roles) - set(ROLES))
        if not roles or unknown:
            raise ValueError(f"roles must be a comma-separated subset of {ROLES}, got {value!r}")
        return ",".join(r for r in ROLES if r in roles)

    def runs(self, role: str) -> bool:
        """Whether this process runs ``role`` (one of ``ROLES``)."""
        return role in self.roles.split(",")

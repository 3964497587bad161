"""Presence settings (env prefix ``PRESENCE_``)."""

from __future__ import annotations

from datetime import timedelta

from inbox_kit.settings import ServiceSettings, service_config
from pydantic import Field

from presence_service.domain.model import Timing
from presence_service.service_layer.marks import MarkTiming


class PresenceSettings(ServiceSettings):
    model_config = service_config("PRESENCE_")

    service_name: str = "presence"
    mongodb_database: str = "inbox_presence"
    grpc_port: int = Field(7061, ge=0, le=65535)
    metrics_port: int = Field(9461, ge=0, le=65535)

    heartbeat_interval_seconds: float = Field(
        15.0, gt=0, description="How often clients should heartbeat."
    )
    session_timeout_seconds: float = Field(
        45.0,
        gt=0,
        description="A session without heartbeat this long expires. 45 s = three missed "
        "heartbeats: absorbs a reload or a phone briefly in the background.",
    )
    sweep_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="How often each replica looks for expired sessions no live replica serves "
        "(a killed replica's).",
    )
    expiry_grace_seconds: float = Field(
        1.0,
        ge=0,
        description="Slack before an actor that does not serve a session (sweeper, another "
        "replica) ends it: clock skew, in-flight heartbeats. Detection of a dead client: "
        "timeout + handover grace when its replica is up; at most timeout + persist interval "
        "+ persist tick + grace + sweep interval when that replica was killed too.",
    )
    heartbeat_persist_interval_seconds: float = Field(
        0.0,
        ge=0,
        description="A replica writes a session's heartbeat progress to the database at most "
        "this often (coalesced, bulk). 0 = min(heartbeat interval, (timeout - heartbeat "
        "interval) / 2). Must keep heartbeat interval + persist interval + persist tick below "
        "the timeout.",
    )
    handover_grace_seconds: float = Field(
        0.25,
        ge=0,
        description="The replica serving a session decides its expiry this long after the "
        "deadline (room for another replica's write of a heartbeat it took over).",
    )
    relay_scan_interval_seconds: float = Field(
        2.0, gt=0, description="How often the outbox relay scans for unpublished events."
    )
    relay_min_age_seconds: float = Field(
        5.0,
        ge=0,
        description="Scans skip records younger than this (the claiming replica's fast path "
        "has them; its own scan also skips what its fast path holds).",
    )
    outage_after_seconds: float = Field(
        0.0,
        ge=0,
        description="No replica alive for longer than this = an outage after which sessions get "
        "a fresh timeout. 0 = max(3 sweep intervals, heartbeat interval).",
    )
    progress_interval_seconds: float = Field(
        0.04,
        gt=0,
        le=0.05,
        description="How often progress marks (PresenceProgressed) are published on every "
        "partition (also while idle), and how often each replica writes its progress floor.",
    )
    progress_replica_ttl_seconds: float = Field(
        10.0,
        gt=0,
        description="A replica whose progress floor is older than this is taken for dead: "
        "the marks then wait only for what it left behind in the store. A replica fences "
        "itself: with less than half of it left since its last floor write landed, it claims "
        "no transition and deletes no session until a renewed floor write has landed. Keep it "
        "well above the worst progress round / floor write (logged above 1 s).",
    )
    progress_lease_seconds: float = Field(
        1.0, gt=0, description="Lease of the replica that publishes the progress marks."
    )
    retention_seconds: float = Field(
        30 * 24 * 3600.0,
        gt=0,
        description="Published outbox records (the transition log except each agent's latest "
        "transition) and session ends older than this are deleted. Default 30 days.",
    )
    retention_interval_seconds: float = Field(
        300.0, gt=0, description="How often each replica runs one bounded pruning round."
    )
    retention_batch: int = Field(
        1000, ge=1, le=100_000, description="At most this many documents per collection per round."
    )
    mongodb_write_concurrency: int = Field(
        1,
        ge=1,
        le=256,
        description="Database writes in flight at once per replica (queued in-process, request "
        "writes before background ones). 1 suits FerretDB/SQLite, which serializes writes and "
        "makes concurrent writers back off with sleeps; raise it on MongoDB.",
    )
    group_commit_linger_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Under load, after a group commit of at least 4 writes of one kind, the "
        "next one waits this long so that more writes join it: fewer database commands per "
        "call (each costs the client and the database CPU whatever its size). A write that "
        "finds no group commit running is never delayed. 0 turns it off.",
    )
    publish_enabled: bool = Field(
        True,
        description="Test hook: false stores events but never publishes them (simulates a "
        "process that dies between storing a transition and publishing it).",
    )

    def persist_interval(self) -> float:
        return self.heartbeat_persist_interval_seconds or min(
            self.heartbeat_interval_seconds,
            (self.session_timeout_seconds - self.heartbeat_interval_seconds) / 2,
        )

    def persist_tick(self) -> float:
        return min(1.0, self.persist_interval() / 4)

    def mark_timing(self) -> MarkTiming:
        return MarkTiming(
            interval=timedelta(seconds=self.progress_interval_seconds),
            replica_ttl=timedelta(seconds=self.progress_replica_ttl_seconds),
            lease_ttl=timedelta(seconds=self.progress_lease_seconds),
        )

    def timing(self) -> Timing:
        return Timing(
            heartbeat_interval=timedelta(seconds=self.heartbeat_interval_seconds),
            session_timeout=timedelta(seconds=self.session_timeout_seconds),
            expiry_grace=timedelta(seconds=self.expiry_grace_seconds),
            persist_interval=timedelta(seconds=self.persist_interval()),
            persist_tick=timedelta(seconds=self.persist_tick()),
            handover_grace=timedelta(seconds=self.handover_grace_seconds),
        )

    def outage_threshold(self) -> float:
        return self.outage_after_seconds or max(
            3 * self.sweep_interval_seconds, self.heartbeat_interval_seconds
        )

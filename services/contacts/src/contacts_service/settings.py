"""Settings of the contacts service (env prefix ``CONTACTS_``)."""

from __future__ import annotations

from inbox_kit.settings import ServiceSettings, service_config
from pydantic import Field


class ContactsSettings(ServiceSettings):
    model_config = service_config("CONTACTS_")

    service_name: str = "contacts"
    mongodb_database: str = "inbox_contacts"
    grpc_port: int = Field(7063, ge=0, le=65535)
    metrics_port: int = Field(9463, ge=0, le=65535)
    consumer_group: str = Field("contacts", description="Kafka group of the profile ingestion.")
    consume: bool = Field(True, description="Run the inbox.contacts.v1 consumer.")
    consumer_offset_reset: str = Field(
        "earliest",
        pattern="^(earliest|latest)$",
        description="Where a group without committed offsets starts (tests: latest).",
    )
    consumer_max_batch: int = Field(
        20_000, ge=1, le=50_000, description="Profile events handled per consumed batch."
    )
    definitions_cache_seconds: float = Field(
        1.0,
        ge=0,
        description="How long a replica serves cached attribute definitions before re-reading "
        "them; bounds how stale another replica's card order/toggles can be. 0 = never cache.",
    )
    cache_max_entries: int = Field(
        200_000,
        ge=0,
        description="Contact documents each replica keeps for card and contact reads (about "
        "1 KB each), fresh through inbox.contacts.changes.v1. 0 = no cache.",
    )
    cache_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest a cached contact is served; only matters for changes that were "
        "not announced on inbox.contacts.changes.v1 (e.g. a manual database edit).",
    )

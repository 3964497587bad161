"""Configuration from ``REPLIES_*`` environment variables."""

from __future__ import annotations

from inbox_kit.settings import ServiceSettings, service_config
from pydantic import Field


class RepliesSettings(ServiceSettings):
    model_config = service_config("REPLIES_")

    service_name: str = "replies"
    mongodb_database: str = "inbox_replies"
    grpc_port: int = Field(7064, ge=0, le=65535)
    metrics_port: int = Field(9464, ge=0, le=65535)
    consumer_group: str = Field("replies", description="Kafka group counting reply usage.")
    contacts_address: str = Field(
        "127.0.0.1:7063",
        description="contacts gRPC target: host:port, or dns:///<headless service>:port to "
        "balance calls over every contacts replica (round_robin).",
    )
    contacts_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description="Deadline of a BatchGetContacts call made to render a reply; shorter when "
        "the incoming call has less time left.",
    )
    usage_refresh_seconds: float = Field(
        5.0, ge=0, description="How stale the usage tie-breaker of search may get."
    )
    usage_full_refresh_seconds: float = Field(
        60.0,
        ge=0,
        description="Usage counters are re-read when their org token changes, and at least "
        "this often regardless (safety net).",
    )
    revision_max_age_seconds: float = Field(
        0.1,
        ge=0,
        description="How long a revision read may be reused by later searches on this replica: "
        "bounds how late another replica's write shows up here. 0 = read it for every search.",
    )
    index_max_orgs: int = Field(256, ge=1, description="Orgs kept in the in-process index.")

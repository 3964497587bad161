"""Configuration of the routing service (env prefix ``ROUTING_``)."""

from __future__ import annotations

from typing import Literal

from inbox_kit.settings import ServiceSettings, service_config
from pydantic import Field


class RoutingSettings(ServiceSettings):
    model_config = service_config("ROUTING_")

    service_name: str = "routing"
    mongodb_database: str = "inbox_routing"
    grpc_port: int = Field(50062, ge=0, le=65535)
    metrics_port: int = Field(9462, ge=0, le=65535)
    consumer_group: str = Field("routing", description="Group of the conversation owners.")
    presence_consumer_group: str = Field(
        "routing-presence", description="Group of the presence timeline recorders."
    )
    dispatcher_consumer_group: str = Field(
        "routing-dispatcher",
        description="Group of the automatic-assignment dispatchers (one writer per org).",
    )
    dispatch_snapshot_seconds: float = Field(
        5.0, gt=0, description="How often the dispatcher snapshots its state (bounds replay)."
    )
    initial_offset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a consumer group without committed offsets starts. Production: "
        "earliest (nothing is missed); tests on a shared broker: latest.",
    )
    batch_max_records: int = Field(1000, ge=1, description="Records per consumed batch.")

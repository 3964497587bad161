"""Where the tests find Kafka and MongoDB.

Order of preference:
1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` set → use that external infrastructure;
2. ``INBOX_TEST_INFRA=containers`` → testcontainers (real Kafka and MongoDB images; needs a
   Docker engine, so it is exercised only where one exists — not on our CI machines);
3. otherwise the devstack (``make up``): reused when already up, else started for the session
   and stopped at its end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongodb_uri: str
    kind: str


@contextmanager
def provide_infra() -> Iterator[Infra]:
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Infra(kafka, mongo, "external")
    elif os.environ.get("INBOX_TEST_INFRA") == "containers":
        with _containers() as infra:
            yield infra
    else:
        with _devstack() as infra:
            yield infra


@contextmanager
def _devstack() -> Iterator[Infra]:
    from inbox_devstack import Devstack, DevstackConfig

    config = DevstackConfig.from_env()
    stack = Devstack(config)
    before = stack.status()
    if not before.all_up:
        stack.up()
    # Stop at the end only what this session started from nothing: if a developer's stack was
    # partly up (one component crashed), bring it back and leave it running.
    started_here = not (before.kafka.up or before.ferretdb.up)
    try:
        yield Infra(config.kafka_bootstrap, config.mongodb_uri, "devstack")
    finally:
        if started_here and not os.environ.get("INBOX_KEEP_STACK"):
            stack.down()


@contextmanager
def _containers() -> Iterator[Infra]:  # pragma: no cover - needs a Docker engine
    from inbox_devstack.topics import create_topics
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with (
        KafkaContainer("apache/kafka:4.4.0").with_kraft() as kafka,
        MongoDbContainer("mongo:8.0") as mongo,
    ):
        bootstrap = kafka.get_bootstrap_server()
        create_topics(bootstrap)
        yield Infra(bootstrap, mongo.get_connection_url(), "containers")

"""The inbox Kafka topics and an idempotent way to create them on any broker."""

from __future__ import annotations

import logging

from inbox_contracts.topics import ALL_TOPIC_NAMES

from .errors import DevstackError
from .process import run_sync

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
DEFAULT_PARTITIONS = 6


def topic_names() -> list[str]:
    """Topics to create: every topic of the contract registry with its dead-letter (and, where
    outside producers write, repartition) topic (``inbox_contracts.topics.ALL_TOPIC_NAMES``)."""
    return list(ALL_TOPIC_NAMES)


async def create_topics_async(
    bootstrap: str,
    names: list[str] | None = None,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication: int = 1,
    wait_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    aiokafka's ``create_topics`` does not raise on per-topic errors, so the response's error
    codes are inspected: only TOPIC_ALREADY_EXISTS (36, e.g. a concurrent creator) is ignored.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = topic_names() if names is None else list(names)
    timeout_ms = int(wait_s * 1000)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, client_id="inbox-devstack"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(n, partitions, replication) for n in missing], timeout_ms=timeout_ms
        )
        created: list[str] = []
        failures: list[str] = []
        for entry in response.topic_errors:
            topic, code = str(entry[0]), int(entry[1])
            message = entry[2] if len(entry) > 2 else None
            if code == 0:
                created.append(topic)
            elif code != TOPIC_ALREADY_EXISTS:
                failures.append(f"{topic}: error code {code} ({message or 'no message'})")
        if failures:
            raise DevstackError(
                f"creating Kafka topics on {bootstrap} failed:\n  " + "\n  ".join(failures)
            )
        return created
    finally:
        await admin.close()


def create_topics(
    bootstrap: str,
    names: list[str] | None = None,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication: int = 1,
) -> list[str]:
    """Blocking wrapper of :func:`create_topics_async` (must not run inside an event loop)."""
    wanted = topic_names() if names is None else list(names)
    created = run_sync(
        create_topics_async(bootstrap, wanted, partitions=partitions, replication=replication)
    )
    if created:
        log.info("created %d Kafka topics: %s", len(created), ", ".join(created))
    else:
        log.info("all %d Kafka topics already exist", len(wanted))
    return created


async def list_topics_async(bootstrap: str, wait_s: float = 10.0) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(wait_s * 1000),
        client_id="inbox-devstack",
    )
    await admin.start()
    try:
        topics: list[str] = await admin.list_topics()
        return topics
    finally:
        await admin.close()


def list_topics(bootstrap: str) -> list[str]:
    """All topic names on the broker at ``bootstrap`` (blocking)."""
    return run_sync(list_topics_async(bootstrap))

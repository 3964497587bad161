"""A consumed Kafka record built by hand, for unit tests of consumers."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import ConsumerRecord


def consumer_record(
    topic: str,
    value: bytes,
    *,
    offset: int = 0,
    partition: int = 0,
    key: bytes | None = b"k",
    headers: Sequence[tuple[str, bytes]] = (),
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value),
        headers=tuple(headers),
    )

"""Kafka's default key partitioning (murmur2 of the key), with the hashes of recent keys kept.

aiokafka's ``murmur2`` is pure Python (10-30 us a key on the shared 2-core machine, more than
the rest of a record's ``send``), and most records reuse a key: an org (routing's dispatch
inputs), a conversation (its events on several topics, the repartition check of each one
consumed). Same partitions as aiokafka's ``DefaultPartitioner`` and the Java clients.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import murmur2

#: Keys whose hash is kept (~100 bytes each).
KEPT_KEYS = 65_536


@lru_cache(maxsize=KEPT_KEYS)
def key_hash(key: bytes) -> int:
    """``murmur2(key)`` as Kafka's default partitioner uses it (non-negative)."""
    hashed: int = murmur2(key)
    return hashed & 0x7FFFFFFF


def partition_for(subject: str, partitions: int) -> int:
    """The partition of ``subject`` under Kafka's default (murmur2) partitioner."""
    return key_hash(subject.encode()) % partitions


class KeyHashPartitioner:
    """An aiokafka ``partitioner``: ``DefaultPartitioner``'s choice, hashes kept (``key_hash``)."""

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[key_hash(key) % len(all_partitions)]

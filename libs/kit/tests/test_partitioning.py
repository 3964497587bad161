"""The kit producer's partitioner chooses what Kafka's default partitioner chooses."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from inbox_kit.partitioning import KeyHashPartitioner, key_hash


def test_keyed_records_go_where_aiokafkas_default_partitioner_sends_them() -> None:
    rng = random.Random(14)
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    keys = [rng.randbytes(rng.randint(0, 40)) for _ in range(2_000)] + [b"org-1"] * 50
    for key in keys:
        for count in (1, 3, 6, 7, 64):
            partitions = list(range(count))
            assert ours(key, partitions, partitions) == default(key, partitions, partitions)


def test_the_hash_of_a_key_seen_before_is_not_computed_again() -> None:
    key_hash.cache_clear()
    for _ in range(3):
        key_hash(b"conversation-a")
    info = key_hash.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_records_without_a_key_go_to_an_available_partition() -> None:
    ours = KeyHashPartitioner()
    chosen = {ours(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}
    assert ours(None, [0, 1, 2], []) in {0, 1, 2}

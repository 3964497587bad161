"""Contacts benchmark: ingest 100,000 profiles from Kafka, then serve contact cards.

Run: ``make bench NAME=contacts`` (needs the devstack: ``make up``).

1. Starts the contacts service as a subprocess (fresh database, its own consumer group at the
   end of the topic), publishes ``CONTACTS_BENCH_N`` (default 100,000) ContactProfileUpserted
   events and times until every contact is stored (**time to ingest**).
2. Closed loop of GetContactCard against a bare ``grpc.aio`` server returning a canned card
   (also a subprocess, same client, same run): the baseline. Then every card read once in
   random order: first reads, each a miss of the service's contact cache (informational),
   and the service's resident memory with all contacts cached.
3. Closed loop (peak) of GetContactCard on random contacts, cache warm → ratio to the
   baseline (target ≥ 0.5).
4. Open loop at half the service's peak rate → p99 (target ≤ 20 ms).

Writes ``bench/results/contacts.json``. Env knobs: CONTACTS_BENCH_N, CONTACTS_BENCH_SECONDS,
CONTACTS_BENCH_CONCURRENCY.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from inbox.contacts.v1 import contacts_pb2 as pb
from inbox.contacts.v1 import contacts_pb2_grpc
from inbox_contracts import CloudEvent
from inbox_contracts.events import ChannelIdentity, ContactProfileUpserted
from inbox_contracts.topics import CONTACTS
from inbox_kit.auth import mint_token
from inbox_testing import free_port, stop_process, wait_serving
from pymongo import AsyncMongoClient

from bench.common import (
    SECRET,
    Metric,
    closed_loop,
    open_loop,
    start_canned_server,
    throughput_metric,
    write_results,
)

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MONGO = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
N = int(os.environ.get("CONTACTS_BENCH_N", "100000"))
SECONDS = float(os.environ.get("CONTACTS_BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("CONTACTS_BENCH_CONCURRENCY", "32"))
INGEST_TIMEOUT = float(os.environ.get("CONTACTS_BENCH_INGEST_TIMEOUT", "240"))
#: Upper bound for reading every card once (~70 s for 100k on the devstack).
FIRST_READS_TIMEOUT = 300.0
ORG = "org-bench"
SERVICE_NAME = "inbox.contacts.v1.ContactsService"


def profile(i: int) -> CloudEvent[ContactProfileUpserted]:
    data = ContactProfileUpserted(
        org_id=ORG,
        contact_id=f"c{i}",
        attributes={
            "name": f"Contact {i}",
            "email": f"contact{i}@example.com",
            "phone": f"+49170{i:07d}",
            "account_number": f"AC-{i:08d}",
            "language": random.choice(["de", "en", "fr"]),
            "membership": random.choice(["gold", "silver", "bronze"]),
        },
        identities=[ChannelIdentity(channel="whatsapp", handle=f"+49170{i:07d}")],
        occurred_at=datetime.now(UTC),
    )
    return CloudEvent.wrap(data, source="/bench/contacts")


def sample_card() -> pb.ContactCard:
    fields = [
        ("name", "Name", "Contact 1"),
        ("phone", "Phone", "+491700000001"),
        ("email", "Email", "contact1@example.com"),
        ("account_number", "Account number", "AC-00000001"),
        ("language", "Language", "de"),
        ("membership", "Membership", "gold"),
    ]
    return pb.ContactCard(
        contact_id="c1",
        fields=[
            pb.ContactCardField(
                key=k,
                label=label,
                type=pb.ATTRIBUTE_TYPE_TEXT,
                value=pb.AttributeValue(text_value=v, display=v),
                has_value=True,
            )
            for k, label, v in fields
        ],
        identities=[pb.ChannelIdentity(channel="whatsapp", handle="+491700000001")],
        definitions_version=0,
    )


async def canned_server_main() -> None:
    """Subprocess mode: the bare grpc.aio baseline answering GetContactCard with a card."""
    server, address = await start_canned_server(SERVICE_NAME, {"GetContactCard": sample_card()})
    print(address, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_process(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], env={**os.environ, **env}, stdout=subprocess.DEVNULL
    )


async def wait_consumer(
    stub: contacts_pb2_grpc.ContactsServiceAsyncStub, token: str, producer: AIOKafkaProducer
) -> None:
    """Publish a sentinel profile until the service stores it (consumer joined its group)."""
    metadata = (("authorization", f"Bearer {token}"),)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        event = CloudEvent.wrap(
            ContactProfileUpserted(
                org_id=ORG, contact_id="sentinel", occurred_at=datetime.now(UTC)
            ),
            source="/bench/contacts",
        )
        await producer.send_and_wait(CONTACTS.name, event.to_json_bytes(), key=event.key)
        for _ in range(10):
            try:
                await stub.GetContact(
                    pb.GetContactRequest(contact_id="sentinel"), metadata=metadata
                )
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.3)
    raise RuntimeError("the service's consumer did not come up")


async def wait_committed(group: str, partition_ids: set[int], timeout: float) -> bool:
    """Wait until ``group`` committed the end offset of every partition of the topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA)
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await consumer.start()
    await admin.start()
    try:
        partitions = [TopicPartition(CONTACTS.name, p) for p in sorted(partition_ids)]
        assert partitions
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await admin.close()
        await consumer.stop()


async def settle(call: Any, calls: int = 200, timeout: float = 120) -> None:
    """Warm up: ``calls`` successful calls in a row (the database may still be checkpointing
    the bulk load right after ingestion)."""
    deadline = time.monotonic() + timeout
    done = 0
    while done < calls:
        try:
            await call()
            done += 1
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            done = 0
            await asyncio.sleep(0.5)


async def run() -> list[Metric]:
    database = f"inbox_contacts_bench_{uuid.uuid4().hex[:8]}"
    port = free_port()
    group = f"contacts-bench-{uuid.uuid4().hex[:8]}"
    service = start_process(
        ["-m", "contacts_service"],
        {
            "CONTACTS_MONGODB_URI": MONGO,
            "CONTACTS_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "CONTACTS_MONGODB_DATABASE": database,
            "CONTACTS_GRPC_PORT": str(port),
            "CONTACTS_METRICS_PORT": "0",
            "CONTACTS_JWT_SECRET": SECRET,
            "CONTACTS_CONSUMER_GROUP": group,
            "CONTACTS_CONSUMER_OFFSET_RESET": "latest",
            "CONTACTS_LOG_LEVEL": "WARNING",
        },
    )
    canned = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.contacts", "--canned", stdout=asyncio.subprocess.PIPE
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    token = mint_token(SECRET, org_id=ORG, agent_id="bench-agent")
    metadata = (("authorization", f"Bearer {token}"),)
    metrics: list[Metric] = []
    try:
        await producer.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = contacts_pb2_grpc.ContactsServiceStub(channel)
            await asyncio.to_thread(wait_serving, f"127.0.0.1:{port}", service)
            await wait_consumer(stub, token, producer)

            # -- 1. time to ingest N profiles ---------------------------------------------
            print(f"publishing {N} profile events ...", flush=True)
            started = time.perf_counter()
            pending = []
            for i in range(N):
                event = profile(i)
                pending.append(
                    await producer.send(CONTACTS.name, event.to_json_bytes(), key=event.key)
                )
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            published = time.perf_counter() - started
            print(f"published in {published:.1f}s; waiting for ingestion ...", flush=True)
            # The service commits a partition's offset only after storing its records: all
            # stored == the group's committed offsets reached the topic's end offsets.
            partition_ids = await producer.partitions_for(CONTACTS.name)
            done = await wait_committed(
                group, partition_ids, INGEST_TIMEOUT - (time.perf_counter() - started)
            )
            ingest_seconds = time.perf_counter() - started
            sample = random.sample(range(N), min(N, 200))
            found = await stub.BatchGetContacts(
                pb.BatchGetContactsRequest(contact_ids=[f"c{i}" for i in sample[:100]]),
                metadata=metadata,
                timeout=30,
            )
            found2 = await stub.BatchGetContacts(
                pb.BatchGetContactsRequest(contact_ids=[f"c{i}" for i in sample[100:]]),
                metadata=metadata,
                timeout=30,
            )
            present = len(found.contacts) + len(found2.contacts)
            print(
                f"ingested (all offsets committed: {done}) in {ingest_seconds:.1f}s; "
                f"spot check {present}/{len(sample)} present",
                flush=True,
            )
            metrics.append(
                Metric(
                    "time_to_ingest_profiles",
                    round(ingest_seconds, 2),
                    "s",
                    target=f"{N} ContactProfileUpserted events published and stored "
                    f"(publishing took {published:.1f}s)",
                    met=done and present == len(sample),
                )
            )
            metrics.append(Metric("ingest_throughput", round(N / ingest_seconds, 1), "events/s"))
            ids = [f"c{i}" for i in range(N)]

            # -- 2. the bare grpc.aio baseline; the first read of every card (cache misses) ---
            assert canned.stdout is not None
            canned_address = (await asyncio.wait_for(canned.stdout.readline(), 15)).decode().strip()

            async def card(
                stub_: contacts_pb2_grpc.ContactsServiceAsyncStub, contact_id: str
            ) -> None:
                await stub_.GetContactCard(
                    pb.GetContactCardRequest(contact_id=contact_id), metadata=metadata, timeout=5
                )

            await settle(lambda: card(stub, random.choice(ids)))
            async with grpc.aio.insecure_channel(canned_address) as base_channel:
                base_stub = contacts_pb2_grpc.ContactsServiceStub(base_channel)
                await settle(lambda: card(base_stub, random.choice(ids)))
                baseline = await closed_loop(
                    lambda i: card(base_stub, random.choice(ids)),
                    concurrency=CONCURRENCY,
                    seconds=SECONDS,
                )
            metrics.append(
                Metric(
                    "baseline_canned_card_throughput",
                    round(baseline.throughput, 1),
                    "calls/s",
                    p50_ms=round(baseline.p50_ms, 2),
                    p99_ms=round(baseline.p99_ms, 2),
                )
            )
            order = random.sample(ids, len(ids))
            first = await closed_loop(
                lambda i: card(stub, order[i - 1]),
                concurrency=CONCURRENCY,
                seconds=FIRST_READS_TIMEOUT,
                calls=len(order),
            )
            first_metric = throughput_metric(
                "contact_card_first_read_throughput",
                first,
                baseline,
                target=f"informational: each of the {len(order)} cards read once, so every "
                "call misses the replica's cache and reads the database",
            )
            rss_mb = resident_mb(service.pid)
            print(
                f"first read of all {len(order)} cards (cache misses): "
                f"{first.throughput:.0f}/s, ratio {first_metric.ratio}, p50 {first.p50_ms:.2f} ms, "
                f"p99 {first.p99_ms:.2f} ms (errors {first.errors}); service RSS {rss_mb:.0f} MB",
                flush=True,
            )
            metrics.append(first_metric)
            metrics.append(Metric("service_rss_with_all_contacts_cached", round(rss_mb), "MB"))

            # -- 3. peak card throughput (cache warm) vs the bare grpc.aio server -------------
            peak = await closed_loop(
                lambda i: card(stub, random.choice(ids)), concurrency=CONCURRENCY, seconds=SECONDS
            )
            peak_metric = throughput_metric(
                "contact_card_peak_throughput",
                peak,
                baseline,
                target=">= 0.5 x bare grpc.aio canned server (closed loop, "
                f"{CONCURRENCY} in flight, random cards of {N} contacts, all cached)",
                min_ratio=0.5,
            )
            print(
                f"card peak {peak.throughput:.0f}/s (errors {peak.errors}) vs baseline "
                f"{baseline.throughput:.0f}/s → ratio {peak_metric.ratio}",
                flush=True,
            )
            metrics.append(peak_metric)

            # -- 4. latency at half the peak rate (open loop) --------------------------------
            rate = max(peak.throughput / 2, 1.0)
            half = await open_loop(
                lambda i: card(stub, random.choice(ids)), rate=rate, seconds=SECONDS
            )
            print(
                f"open loop at {rate:.0f}/s: p50 {half.p50_ms:.2f} ms, p99 {half.p99_ms:.2f} ms "
                f"(errors {half.errors})",
                flush=True,
            )
            metrics.append(
                Metric(
                    "contact_card_p99_at_half_peak",
                    round(half.p99_ms, 2),
                    "ms",
                    p50_ms=round(half.p50_ms, 2),
                    p99_ms=round(half.p99_ms, 2),
                    target=f"p99 <= 20 ms at {rate:.0f} calls/s (half of peak), open loop",
                    met=half.p99_ms <= 20 and half.errors == 0,
                )
            )
    finally:
        await producer.stop()
        stop_process(service)
        if canned.returncode is None:
            canned.terminate()
            await canned.wait()
        if os.environ.get("CONTACTS_BENCH_KEEP_DB"):
            print(f"kept database {database}")
        else:
            await mongo.drop_database(database)
        await mongo.close()
    return metrics


def main() -> None:
    if sys.argv[1:2] == ["--canned"]:
        asyncio.run(canned_server_main())
        return
    metrics = asyncio.run(run())
    write_results("contacts", metrics)
    print(json.dumps({m.metric: m.value for m in metrics}))


if __name__ == "__main__":
    main()

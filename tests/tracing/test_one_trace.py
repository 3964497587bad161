"""One trace end to end, on the real Kafka broker and MongoDB-wire database.

An ingestor publishes an inbound message on ``inbox.messages.v1`` with a ``traceparent``
header; routing (in-process) consumes it, decides an automatic unassignment (R2) and
publishes it on ``inbox.routing.v1``; the app backend reacting to that event, in its trace,
renders a saved reply (replies, in-process), which reads the contact from contacts
(in-process) over gRPC. Every span is recorded in memory (the ``spans`` fixture): all of them
belong to the ingestor's trace, and each hop is the child of, or linked to, the previous one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from inbox.replies.v1 import replies_pb2, replies_pb2_grpc
from inbox.routing.v1 import routing_pb2, routing_pb2_grpc
from inbox_contracts import utc_now
from inbox_contracts.events import ConversationAutoUnassigned
from inbox_contracts.topics import MESSAGES, ROUTING
from inbox_kit import tracing
from inbox_kit.grpc_client import insecure_channel
from inbox_testing import TEST_JWT_SECRET, Infra, TopicProbe, bearer, wait_until
from inbox_testing.spans import RecordedSpans
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from pymongo import AsyncMongoClient
from routing_testing import assigned, inbound, outbound, signed_in, signed_out, topic_of

pytestmark = pytest.mark.infra

REPLIES = "inbox.replies.v1.RepliesService"
CONTACTS = "inbox.contacts.v1.ContactsService"


@pytest.fixture
async def services(infra: Infra) -> AsyncIterator[dict[str, Any]]:
    from contacts_service.bootstrap import bootstrap as contacts_bootstrap
    from contacts_service.settings import ContactsSettings
    from replies_service.bootstrap import bootstrap as replies_bootstrap
    from replies_service.settings import RepliesSettings
    from routing_service.bootstrap import bootstrap as routing_bootstrap
    from routing_service.settings import RoutingSettings

    tag = uuid.uuid4().hex[:8]
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "grpc_port": 0,
        "metrics_port": 0,
        "jwt_secret": TEST_JWT_SECRET,
        "shutdown_grace_seconds": 0.5,
    }
    databases = [f"test_trace_{name}_{tag}" for name in ("routing", "contacts", "replies")]
    contacts = contacts_bootstrap(
        ContactsSettings(**common, mongodb_database=databases[1], consume=False)
    )
    await contacts.runtime.start()
    replies = replies_bootstrap(
        RepliesSettings(
            **common,
            mongodb_database=databases[2],
            consumer_group=f"trace-replies-{tag}",
            contacts_address=contacts.runtime.grpc.address,
        ),
    )
    await replies.runtime.start()
    routing = routing_bootstrap(
        RoutingSettings(
            **common,
            mongodb_database=databases[0],
            consumer_group=f"trace-routing-{tag}",
            presence_consumer_group=f"trace-routing-p-{tag}",
            dispatcher_consumer_group=f"trace-routing-d-{tag}",
            initial_offset="latest",
        )
    )
    await routing.runtime.start()
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await routing.ready(timeout=60)
        yield {"routing": routing, "replies": replies, "producer": producer}
    finally:
        await producer.stop()
        for runtime in (routing.runtime, replies.runtime, contacts.runtime):
            await runtime.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
        for name in databases:
            await client.drop_database(name)
        await client.close()


def _one(spans: list[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    matching = [s for s in spans if s.kind == kind]
    assert len(matching) == 1, [(s.name, s.kind) for s in spans]
    return matching[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_an_inbound_message_is_one_trace_through_routing_replies_and_contacts(
    infra: Infra, services: dict[str, Any], spans: RecordedSpans, make_token: Any, unique: Any
) -> None:
    producer: AIOKafkaProducer = services["producer"]
    routing, replies = services["routing"], services["replies"]
    org, ana, conv = unique("org"), unique("ana"), unique("conv")
    admin = make_token(org, "boss", role="admin")
    async with insecure_channel(
        routing.runtime.grpc.address, service="inbox.routing.v1.RoutingService"
    ) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        await stub.UpdateRoutingSettings(
            routing_pb2.UpdateRoutingSettingsRequest(remove_assignment_on_sign_out=True),
            metadata=bearer(admin),
            timeout=10,
        )
        # ana answered the conversation (PENDING), then signed out; all after the setting took
        # effect (server time)
        t0 = utc_now() + timedelta(milliseconds=10)
        s = lambda n: t0 + timedelta(milliseconds=100 * n)  # noqa: E731
        out = signed_out(org, ana, s(4))
        for event in (
            signed_in(org, ana, s(0)),
            inbound(org, conv, s(1)),
            assigned(org, conv, ana, s(2)),
            outbound(org, conv, s(3), agent=ana),
            out,
        ):
            await producer.send_and_wait(topic_of(event), event.to_json_bytes(), key=event.key)

        async def pending_and_signed_out() -> bool:
            try:
                reply = await stub.GetConversation(
                    routing_pb2.GetConversationRequest(conversation_id=conv),
                    metadata=bearer(make_token(org, ana)),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return False  # not folded yet
                raise
            timeline = (await routing.store.timelines([(org, ana)])).get((org, ana), [])
            return (
                reply.conversation.assignee_id == ana
                and any(p.event_id == out.id for p in timeline)
                and reply.conversation.queue == routing_pb2.CONVERSATION_QUEUE_PENDING
            )

        await wait_until(pending_and_signed_out, timeout=30)

    # the ingestor's trace: a new message moves the conversation back to NEW (R2)
    message = inbound(org, conv, max(utc_now(), s(6)))
    ingestor = spans.tracer.start_span("ingest message")
    ctx = ingestor.get_span_context()
    traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    async with TopicProbe(infra.kafka_bootstrap, ROUTING.name) as probe:
        await producer.send_and_wait(
            MESSAGES.name,
            message.to_json_bytes(),
            key=message.key,
            headers=[("traceparent", traceparent.encode())],
        )
        ingestor.end()

        def decision(record: Any) -> bool:
            body = json.loads(record.value)
            return body["data"].get("cause_event_id") == message.id

        [record] = await probe.wait_for(decision, timeout=30)
    event_type = ConversationAutoUnassigned.event_type
    assert json.loads(record.value)["type"] == event_type

    # the app backend handles the routing event in its trace: it renders a reply for the contact
    incoming = tracing.record_context(record.headers)
    assert incoming is not None and incoming.trace_id == ctx.trace_id
    token = make_token(org, "ben")
    async with insecure_channel(replies.runtime.grpc.address, service=REPLIES) as channel:
        stub_r = replies_pb2_grpc.RepliesServiceStub(channel)
        saved = await stub_r.CreateReply(
            replies_pb2.CreateReplyRequest(
                title="Welcome back", body='Hi {{contact.name | fallback: "there"}}'
            ),
            metadata=bearer(token),
            timeout=10,
        )
        attached = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(incoming)))
        try:
            rendered = await stub_r.RenderReply(
                replies_pb2.RenderReplyRequest(reply_id=saved.reply_id, contact_id=unique("c")),
                metadata=bearer(token),
                timeout=10,
            )
        finally:
            otel_context.detach(attached)
    assert rendered.text == "Hi there"

    # one trace, hop by hop
    of_trace = spans.of_trace(ctx.trace_id)
    send = [
        s
        for s in of_trace
        if s.name == f"send {ROUTING.name}"
        and s.attributes is not None
        and s.attributes.get("cloudevents.event_type") == event_type
    ]
    assert len(send) == 1, [s.name for s in of_trace]
    decision_send = send[0]
    assert decision_send.kind == SpanKind.PRODUCER
    assert _parent_id(decision_send) == ctx.span_id  # continues the message's trace
    assert incoming.span_id == _id(decision_send)  # the record carries the send span
    # the routing consumer span that handled the message is linked to the ingestor's span
    consumers = spans.where(
        lambda sp: (
            sp.kind == SpanKind.CONSUMER
            and any(link.context.span_id == ctx.span_id for link in sp.links)
        )
    )
    assert consumers, "no consumer span linked to the ingestor"
    assert all(c.attributes and "messaging.consumer.group.name" in c.attributes for c in consumers)
    render = [s for s in of_trace if s.name == f"{REPLIES}/RenderReply"]
    render_client, render_server = _one(render, SpanKind.CLIENT), _one(render, SpanKind.SERVER)
    assert _parent_id(render_client) == _id(decision_send)
    assert _parent_id(render_server) == _id(render_client)
    lookup = [s for s in of_trace if s.name == f"{CONTACTS}/BatchGetContacts"]
    lookup_client, lookup_server = _one(lookup, SpanKind.CLIENT), _one(lookup, SpanKind.SERVER)
    assert _parent_id(lookup_client) == _id(render_server)
    assert _parent_id(lookup_server) == _id(lookup_client)
    assert lookup_server.attributes is not None
    assert lookup_server.attributes["rpc.grpc.status_code"] == 0

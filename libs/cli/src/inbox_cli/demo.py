"""``make demo``: a scripted walk through every feature of PRODUCT.md against the running stack.

Start the stack first (``make run`` in another terminal, or ``make up``). Each step prints what
it does, what it expected, what happened and how long it took; the exit code is non-zero if
any expectation failed. Everything happens in a fresh org (``demo-<random>``), so the demo can
run any number of times against the same stack.

1. Remove assignment on sign-out (presence + routing): R1 and R2, the auto-unassigned event
   and the audit trail.
2. Contact attributes (contacts): reorder + hide, and the contact card follows.
3. Saved replies (replies): a shared reply found by its shortcut and rendered with the
   contact's name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from inbox.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from inbox.presence.v1 import presence_pb2, presence_pb2_grpc
from inbox.replies.v1 import replies_pb2, replies_pb2_grpc
from inbox.routing.v1 import routing_pb2 as pb
from inbox.routing.v1 import routing_pb2_grpc
from inbox_contracts import CloudEvent, EventData, decode
from inbox_contracts.topics import ROUTING, Topic

from inbox_cli import api
from inbox_cli import routing_client as rc
from inbox_cli.config import BY_NAME, SERVICES
from inbox_cli.run_all import health

T = TypeVar("T")

BOLD, GREEN, RED, DIM, RESET = "\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m"
if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
    BOLD = GREEN = RED = DIM = RESET = ""


class ExpectationFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExpectationFailed(message)


@dataclass
class StepResult:
    feature: str
    title: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class Demo:
    timeout: float
    results: list[StepResult] = field(default_factory=list)
    feature: str = ""

    def section(self, title: str) -> None:
        self.feature = title
        print(f"\n{BOLD}== {title}{RESET}")

    @asynccontextmanager
    async def step(self, title: str) -> AsyncIterator[list[str]]:
        """A timed step; append lines to the yielded list to report what happened."""
        print(f"-> {title}", flush=True)
        notes: list[str] = []
        started = time.perf_counter()
        try:
            yield notes
        except (ExpectationFailed, grpc.RpcError, TimeoutError) as exc:
            took = time.perf_counter() - started
            text = api.describe_rpc_error(exc) if isinstance(exc, grpc.RpcError) else str(exc)
            for note in notes:
                print(f"   {DIM}{note}{RESET}")
            print(f"   {RED}FAILED{RESET} ({took * 1000:.0f} ms): {text}", flush=True)
            self.results.append(StepResult(self.feature, title, took, False, text))
            raise
        took = time.perf_counter() - started
        for note in notes:
            print(f"   {DIM}{note}{RESET}")
        print(f"   {GREEN}ok{RESET} ({took * 1000:.0f} ms)", flush=True)
        self.results.append(StepResult(self.feature, title, took, True, "; ".join(notes)))

    async def eventually(
        self,
        probe: Callable[[], Awaitable[T]],
        accept: Callable[[T], bool],
        what: str,
        timeout: float | None = None,
    ) -> T:
        """Poll ``probe`` until ``accept`` holds (reads are eventually consistent)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last: T | None = None
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                last = await probe()
                last_error = None
                if accept(last):
                    return last
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise
                last_error = exc
            await asyncio.sleep(0.1)
        seen = (
            api.describe_rpc_error(last_error)
            if isinstance(last_error, grpc.RpcError)
            else _short(last)
        )
        raise ExpectationFailed(
            f"{what}: not seen within {timeout or self.timeout:.0f}s (last: {seen})"
        )


def _short(value: Any) -> str:
    if hasattr(value, "DESCRIPTOR"):
        value = api.to_dict(value)
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) < 400 else text[:400] + "..."


class EventWatcher:
    """Reads a topic from its current end; ``wait_for`` returns the first matching event."""

    def __init__(self, bootstrap: str, topic: Topic) -> None:
        self._bootstrap, self._topic = bootstrap, topic
        self._consumer: Any = None
        self._seen: list[CloudEvent[EventData]] = []

    async def __aenter__(self) -> EventWatcher:

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None
        )
        await self._consumer.start()
        # Nothing is subscribed yet: fetch the topic's metadata explicitly.
        cluster = await self._consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(self._topic.name) or set()
        if not partitions:
            await self._consumer.stop()
            raise ExpectationFailed(f"topic {self._topic.name} has no partitions")
        tps = [TopicPartition(self._topic.name, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end positions now, before anything is published
            await self._consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, predicate: Callable[[CloudEvent[EventData]], bool], timeout: float
    ) -> CloudEvent[EventData]:
        for event in self._seen:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        event = decode(record.value)
                    except Exception:
                        continue
                    self._seen.append(event)
                    if predicate(event):
                        return event
        raise TimeoutError(f"no matching event on {self._topic.name} within {timeout:.0f}s")


def stub(service: str) -> Any:
    channel = grpc.aio.insecure_channel(BY_NAME[service].address())
    if service == "presence":
        return presence_pb2_grpc.PresenceServiceStub(channel)
    if service == "contacts":
        return contacts_pb2_grpc.ContactsServiceStub(channel)
    if service == "replies":
        return replies_pb2_grpc.RepliesServiceStub(channel)

    return routing_pb2_grpc.RoutingServiceStub(channel)


@dataclass
class People:
    org: str
    admin: tuple[tuple[str, str]]
    ana: tuple[tuple[str, str]]
    ana_id: str
    admin_id: str


async def publish(built: tuple[Topic, CloudEvent[Any]]) -> CloudEvent[Any]:
    topic, event = built
    await api.publish(api.kafka_bootstrap(), topic, event)
    return event


# --- 1. remove assignment on sign-out ---------------------------------------------------------


async def feature_remove_assignment(demo: Demo, who: People) -> None:

    demo.section("1. Remove assignment when an agent signs out (presence + routing)")
    routing, presence = stub("routing"), stub("presence")
    org = who.org
    conv_new, conv_pending = f"conv-new-{uuid.uuid4().hex[:6]}", f"conv-pend-{uuid.uuid4().hex[:6]}"
    channel, contact = "whatsapp-acme", f"contact-{uuid.uuid4().hex[:6]}"

    async with demo.step('admin turns on "Remove assignment" (off by default)') as notes:
        before = await rc.get_remove_assignment(routing, who.admin)
        expect(before is False, f"expected the setting off for a new org, got {before}")
        after = await rc.set_remove_assignment(routing, who.admin, True)
        expect(after is True, "setting did not turn on")
        notes.append(f"remove assignment: {before} -> {after}")

    async with demo.step(f"agent {who.ana_id} signs in") as notes:
        signed_in = await presence.SignIn(
            presence_pb2.SignInRequest(client_description="demo"), metadata=who.ana
        )
        session_id = signed_in.session_id
        notes.append(f"session {session_id}")

    async with demo.step(
        f"customer writes on two conversations; both assigned to {who.ana_id}; "
        f"she answers one (-> PENDING)"
    ) as notes:
        for conv in (conv_new, conv_pending):
            await publish(api.inbound(org, conv, contact, channel))
            await publish(api.assigned(org, conv, who.ana_id, who.admin_id))
        await demo.eventually(
            lambda: rc.get_conversation(routing, who.ana, conv_pending),
            lambda c: c["assignee_id"] == who.ana_id,
            f"{conv_pending} assigned",
        )
        await publish(api.outbound(org, conv_pending, who.ana_id, channel))
        new = await demo.eventually(
            lambda: rc.get_conversation(routing, who.ana, conv_new),
            lambda c: c["queue"] == "NEW" and c["assignee_id"] == who.ana_id,
            f"{conv_new} NEW and assigned to {who.ana_id}",
        )
        pending = await demo.eventually(
            lambda: rc.get_conversation(routing, who.ana, conv_pending),
            lambda c: c["queue"] == "PENDING" and c["assignee_id"] == who.ana_id,
            f"{conv_pending} PENDING and assigned to {who.ana_id}",
        )
        notes.append(f"{conv_new}: {new['queue']}, assignee {new['assignee_id']}")
        notes.append(f"{conv_pending}: {pending['queue']}, assignee {pending['assignee_id']}")

    async with EventWatcher(api.kafka_bootstrap(), ROUTING) as watcher:

        def auto_unassigned(conv: str, reason: str) -> Callable[[CloudEvent[EventData]], bool]:
            def check(e: CloudEvent[EventData]) -> bool:
                d = e.data
                return (
                    e.type == "inbox.routing.auto_unassigned.v1"
                    and d.org_id == org
                    and getattr(d, "conversation_id", None) == conv
                    and str(getattr(d, "reason", "")) == reason
                )

            return check

        async with demo.step(
            f"{who.ana_id} signs out -> her NEW conversation is unassigned (R1)"
        ) as notes:
            t0 = time.perf_counter()
            await presence.SignOut(
                presence_pb2.SignOutRequest(session_id=session_id), metadata=who.ana
            )
            event = await watcher.wait_for(
                auto_unassigned(conv_new, "agent_signed_out"), demo.timeout
            )
            latency = time.perf_counter() - t0
            data: Any = event.data
            expect(data.previous_assignee_id == who.ana_id, "previous assignee")
            notes.append(
                f"event {event.type} for {data.conversation_id}: previous assignee "
                f"{data.previous_assignee_id}, reason {data.reason}, caused by "
                f"{data.cause_event_type} ({latency * 1000:.0f} ms after the sign-out call)"
            )
            new = await demo.eventually(
                lambda: rc.get_conversation(routing, who.admin, conv_new),
                lambda c: not c["assignee_id"],
                f"{conv_new} unassigned",
            )
            notes.append(f"{conv_new}: {new['queue']}, unassigned")

        async with demo.step("the audit trail says who changed it, when and why") as notes:
            trail = await rc.get_audit_trail(routing, who.admin, conv_new)
            auto = [e for e in trail if "signed_out" in json.dumps(e).lower()]
            expect(bool(auto), f"no auto-unassignment in the audit trail: {_short(trail)}")
            for entry in trail:
                notes.append(rc.describe_audit_entry(entry))

        async with demo.step(f"the PENDING conversation stays with {who.ana_id}") as notes:
            pending = await rc.get_conversation(routing, who.admin, conv_pending)
            expect(
                pending["queue"] == "PENDING" and pending["assignee_id"] == who.ana_id,
                f"expected PENDING + {who.ana_id}, got {_short(pending)}",
            )
            notes.append(f"{conv_pending}: {pending['queue']}, assignee {pending['assignee_id']}")

        async with demo.step(
            "the customer writes on the PENDING one while she is signed out -> unassigned (R2)"
        ) as notes:
            t0 = time.perf_counter()
            await publish(api.inbound(org, conv_pending, contact, channel))
            event = await watcher.wait_for(
                auto_unassigned(conv_pending, "moved_to_new_while_signed_out"), demo.timeout
            )
            notes.append(
                f"event reason {event.data.reason} "  # type: ignore[attr-defined]
                f"({(time.perf_counter() - t0) * 1000:.0f} ms after the message was published)"
            )
            pending = await demo.eventually(
                lambda: rc.get_conversation(routing, who.admin, conv_pending),
                lambda c: c["queue"] == "NEW" and not c["assignee_id"],
                f"{conv_pending} NEW and unassigned",
            )
            notes.append(f"{conv_pending}: {pending['queue']}, unassigned")


# --- 4. automatic assignment --------------------------------------------------------------------


async def feature_automatic_assignment(demo: Demo, who: People) -> None:

    demo.section("4. Automatic assignment (routing): oldest waiting first, within capacity")
    routing, presence = stub("routing"), stub("presence")
    # its own org: feature 1 leaves conversations waiting (unassigned by R1/R2) in who.org,
    # and automatic assignment would rightly hand those out first (oldest waiting first)
    org = f"{who.org}-aa"
    admin = api.bearer(api.token(org, who.admin_id, "admin", ["support"]))
    ben_id, cleo_id = "agent-ben", "agent-cleo"
    ben = api.bearer(api.token(org, ben_id, "agent", ["support"]))
    cleo = api.bearer(api.token(org, cleo_id, "agent", ["support"]))
    tag = uuid.uuid4().hex[:6]
    c1, c2, c3 = (f"conv-aa{i}-{tag}" for i in (1, 2, 3))
    channel, contact = "whatsapp-acme", f"contact-{tag}"

    async with demo.step('admin turns on "Automatic assignment", capacity 1 per agent') as notes:
        await rc.set_remove_assignment(routing, admin, True)
        reply = await routing.UpdateAssignmentSettings(
            pb.UpdateAssignmentSettingsRequest(enabled=True, default_capacity=1),
            metadata=admin,
        )
        expect(reply.enabled and reply.default_capacity == 1, "settings not stored")
        notes.append(
            f"automatic assignment on, capacity {reply.default_capacity}, by {reply.updated_by}"
        )

    async with EventWatcher(api.kafka_bootstrap(), ROUTING) as watcher:

        def auto_assigned(conv: str) -> Callable[[CloudEvent[EventData]], bool]:
            def check(e: CloudEvent[EventData]) -> bool:
                return (
                    e.type == "inbox.routing.auto_assigned.v1"
                    and e.data.org_id == org
                    and getattr(e.data, "conversation_id", None) == conv
                )

            return check

        async def waiting_reason(conv: str) -> str:
            async def listed() -> Any:
                return await routing.ListWaitingConversations(
                    pb.ListWaitingConversationsRequest(), metadata=admin
                )

            reply = await demo.eventually(
                listed,
                lambda r: any(w.conversation_id == conv for w in r.conversations),
                f"{conv} in the waiting queue",
            )
            return str(next(w.reason for w in reply.conversations if w.conversation_id == conv))

        async with demo.step(f"{ben_id} and {cleo_id} sign in; a customer writes") as notes:
            ben_session = (
                await presence.SignIn(
                    presence_pb2.SignInRequest(client_description="demo"), metadata=ben
                )
            ).session_id
            await presence.SignIn(
                presence_pb2.SignInRequest(client_description="demo"), metadata=cleo
            )
            await publish(api.inbound(org, c1, contact, channel))
            event = await watcher.wait_for(auto_assigned(c1), demo.timeout)
            first: Any = event.data
            notes.append(f"{c1} -> {first.assignee_id} ({first.reason})")

        async with demo.step(
            "its agent signs out -> R1 unassigns it -> the next available agent gets it"
        ) as notes:
            holder = first.assignee_id
            other_id = cleo_id if holder == ben_id else ben_id
            holder_md = ben if holder == ben_id else cleo
            if holder == ben_id:
                await presence.SignOut(
                    presence_pb2.SignOutRequest(session_id=ben_session), metadata=ben
                )
            else:
                await presence.ForceSignOut(
                    presence_pb2.ForceSignOutRequest(agent_id=holder), metadata=admin
                )
            event = await watcher.wait_for(
                lambda e: auto_assigned(c1)(e) and getattr(e.data, "assignee_id", "") == other_id,
                demo.timeout,
            )
            notes.append(f"{c1}: {holder} signed out -> {other_id} ({event.data.reason})")  # type: ignore[attr-defined]
            await presence.SignIn(
                presence_pb2.SignInRequest(client_description="demo"), metadata=holder_md
            )

        async with demo.step(
            f"{holder} is Away, {other_id} at capacity -> a new one waits"
        ) as notes:
            await presence.SetAvailability(
                presence_pb2.SetAvailabilityRequest(availability=presence_pb2.AVAILABILITY_AWAY),
                metadata=holder_md,
            )

            async def agent_loads() -> Any:
                return await routing.ListAgentLoads(pb.ListAgentLoadsRequest(), metadata=admin)

            # the dispatcher learns of the Away through routing's presence consumer, the
            # conversation through its owner: a conversation sent before the Away is known
            # can still go to the agent (routing README, Limits)
            await demo.eventually(
                agent_loads,
                lambda r: any(a.agent_id == holder and not a.available for a in r.agents),
                f"{holder} Away in the agent loads",
            )
            await publish(api.inbound(org, c2, contact, channel))
            reason = await waiting_reason(c2)
            expect("away" in reason or "capacity" in reason, f"unexpected reason {reason!r}")
            notes.append(f"{c2} waits: {reason}")
            await publish(api.inbound(org, c3, contact, channel))
            notes.append(f"{c3} waits: {await waiting_reason(c3)}")
            for a in (await agent_loads()).agents:
                notes.append(
                    f"{a.agent_id}: holds {a.held} of {a.capacity or 'unlimited'}, "
                    f"available {a.available}"
                )

        async with demo.step(
            f"{other_id} resolves {c1} -> capacity frees -> the oldest waiting ({c2}) is assigned"
        ) as notes:
            await publish(api.resolved(org, c1, other_id))
            event = await watcher.wait_for(auto_assigned(c2), demo.timeout)
            notes.append(f"{c2} -> {event.data.assignee_id} ({event.data.reason})")  # type: ignore[attr-defined]
            notes.append(f"{c3} still waits: {await waiting_reason(c3)}")


# --- 2. contact attributes --------------------------------------------------------------------


def card_rows(card: Any) -> list[tuple[str, str]]:
    return [(f.key, f.value.display if f.has_value else "") for f in card.fields]


async def feature_contact_attributes(demo: Demo, who: People, contact_id: str) -> None:

    demo.section("2. Contact attributes (contacts)")
    contacts = stub("contacts")
    profile = {
        "name": "Maria Muster",
        "email": "maria@example.com",
        "language": "de",
        "membership": "gold",
        "account_number": "AC-1042",
    }

    async with demo.step(
        "an ingestor publishes a contact profile; the agent opens the card"
    ) as notes:
        await publish(
            api.contact_profile(who.org, contact_id, profile, [("whatsapp", "+491701234567")])
        )
        card = await demo.eventually(
            lambda: contacts.GetContactCard(
                contacts_pb2.GetContactCardRequest(contact_id=contact_id), metadata=who.ana
            ),
            lambda c: dict(card_rows(c)).get("name") == "Maria Muster",
            "contact card with the profile",
        )
        for key, value in card_rows(card):
            notes.append(f"{key:<15} {value}")

    new_order = ["membership", "name", "account_number", "email"]
    hidden = ["language", "phone"]
    async with demo.step(f"admin drags {new_order} to the top and hides {hidden}") as notes:
        defs = await contacts.ListAttributeDefinitions(
            contacts_pb2.ListAttributeDefinitionsRequest(), metadata=who.admin
        )
        rest = [d.key for d in defs.definitions if d.key not in new_order]
        reply = await contacts.ReorderAttributeDefinitions(
            contacts_pb2.ReorderAttributeDefinitionsRequest(
                keys=new_order + rest, expected_version=defs.version
            ),
            metadata=who.admin,
        )
        version = reply.version
        for key in hidden:
            await contacts.UpdateAttributeDefinition(
                contacts_pb2.UpdateAttributeDefinitionRequest(
                    key=key, enabled=False, expected_version=version
                ),
                metadata=who.admin,
            )
            version = (
                await contacts.ListAttributeDefinitions(
                    contacts_pb2.ListAttributeDefinitionsRequest(), metadata=who.admin
                )
            ).version
        notes.append(f"definitions version {defs.version} -> {version}")

    async with demo.step("an agent's card follows: new order, hidden ones gone") as notes:
        card = await demo.eventually(
            lambda: contacts.GetContactCard(
                contacts_pb2.GetContactCardRequest(contact_id=contact_id), metadata=who.ana
            ),
            lambda c: (
                [k for k, _ in card_rows(c)][: len(new_order)] == new_order
                and not set(hidden) & {k for k, _ in card_rows(c)}
            ),
            "card in the new order without the hidden attributes",
        )
        for key, value in card_rows(card):
            notes.append(f"{key:<15} {value}")

    async with demo.step("an agent may not change the layout (admin only)") as notes:
        try:
            await contacts.UpdateAttributeDefinition(
                contacts_pb2.UpdateAttributeDefinitionRequest(key="language", enabled=True),
                metadata=who.ana,
            )
        except grpc.aio.AioRpcError as exc:
            expect(exc.code() == grpc.StatusCode.PERMISSION_DENIED, f"got {exc.code().name}")
            notes.append(f"{exc.code().name}: {exc.details()}")
        else:
            raise ExpectationFailed("an agent changed an attribute definition")


# --- 3. saved replies -------------------------------------------------------------------------


async def feature_saved_replies(demo: Demo, who: People, contact_id: str) -> None:

    demo.section("3. Saved replies (replies)")
    replies = stub("replies")
    body = 'Hi {{contact.name | fallback: "there"}}, your refund is on its way. {{agent.name}}'

    async with demo.step(
        "admin creates a shared collection for team support with /refund"
    ) as notes:
        collection = await replies.CreateCollection(
            replies_pb2.CreateCollectionRequest(
                name="Billing FAQ", description="refunds and invoices", team_ids=["support"]
            ),
            metadata=who.admin,
        )
        reply = await replies.CreateReply(
            replies_pb2.CreateReplyRequest(
                collection_id=collection.collection_id,
                title="Refund confirmation",
                body=body,
                shortcut="refund",
                tags=["billing"],
            ),
            metadata=who.admin,
        )
        await replies.CreateReply(
            replies_pb2.CreateReplyRequest(
                collection_id=collection.collection_id,
                title="Invoice copy (mentions refund policy)",
                body="Here is your invoice. Our refund policy: 30 days.",
                shortcut="invoice",
            ),
            metadata=who.admin,
        )
        kind = replies_pb2.CollectionKind.Name(collection.kind)
        notes.append(f"collection {collection.collection_id} ({kind}), reply {reply.reply_id}")

    async with demo.step(f"{who.ana_id} (team support) types /refund") as notes:
        found = await demo.eventually(
            lambda: replies.SearchReplies(
                replies_pb2.SearchRepliesRequest(query="/refund", page_size=5), metadata=who.ana
            ),
            lambda r: bool(r.results) and r.results[0].reply.reply_id == reply.reply_id,
            "the /refund reply ranked first",
        )
        for result in found.results:
            notes.append(
                f"{replies_pb2.MatchKind.Name(result.match):<26} /{result.reply.shortcut:<8} "
                f"{result.reply.title}"
            )

    async with demo.step("rendered for the conversation's contact") as notes:
        rendered = await replies.RenderReply(
            replies_pb2.RenderReplyRequest(reply_id=reply.reply_id, contact_id=contact_id),
            metadata=who.ana,
        )
        notes.append(rendered.text)
        expect("Maria Muster" in rendered.text, f"contact's name not in {rendered.text!r}")

    async with demo.step("for an unknown contact the fallback applies") as notes:
        rendered = await replies.RenderReply(
            replies_pb2.RenderReplyRequest(reply_id=reply.reply_id, contact_id="nobody"),
            metadata=who.ana,
        )
        notes.append(rendered.text)
        expect(rendered.text.startswith("Hi there,"), f"no fallback in {rendered.text!r}")

    async with demo.step("an agent outside the team does not see the shared collection") as notes:
        outsider = api.bearer(api.token(who.org, "agent-bob", "agent", ["sales"]))
        result = await replies.SearchReplies(
            replies_pb2.SearchRepliesRequest(query="/refund"), metadata=outsider
        )
        expect(not result.results, f"agent-bob sees {len(result.results)} result(s)")
        notes.append("agent-bob (team sales): no results")


# --- driver -----------------------------------------------------------------------------------


NEEDS = {
    1: {"presence", "routing"},
    2: {"contacts"},
    3: {"contacts", "replies"},
    4: {"presence", "routing"},
}


async def check_health(demo: Demo, needed: set[str]) -> None:

    demo.section("0. The stack")
    async with demo.step(f"the services answer gRPC health ({', '.join(sorted(needed))})") as notes:
        specs = [s for s in SERVICES if s.name in needed]
        states = {s.name: health(s.address(), timeout=2.0) for s in specs}
        for s in specs:
            notes.append(f"{s.name:<9} {s.address():<16} {states[s.name]}")
        down = [n for n, st in states.items() if st != "SERVING"]
        expect(not down, f"not serving: {down} (start the stack: make run / make up)")


async def run(timeout: float, only: set[int]) -> int:
    demo = Demo(timeout=timeout)
    suffix = uuid.uuid4().hex[:8]
    org = f"demo-{suffix}"
    who = People(
        org=org,
        admin=api.bearer(api.token(org, "admin-alex", "admin", ["support"])),
        ana=api.bearer(api.token(org, "agent-ana", "agent", ["support"])),
        ana_id="agent-ana",
        admin_id="admin-alex",
    )
    contact_id = f"contact-maria-{suffix}"
    started = time.perf_counter()
    print(f"{BOLD}Inbox demo{RESET} in org {org} (kafka {api.kafka_bootstrap()})")
    try:
        await check_health(demo, set().union(*(NEEDS[n] for n in only)))
    except (ExpectationFailed, grpc.RpcError, TimeoutError):
        return summary(demo, time.perf_counter() - started)
    features: dict[int, Callable[[], Awaitable[None]]] = {
        1: lambda: feature_remove_assignment(demo, who),
        2: lambda: feature_contact_attributes(demo, who, contact_id),
        3: lambda: feature_saved_replies(demo, who, contact_id),
        4: lambda: feature_automatic_assignment(demo, who),
    }
    if 3 in only and 2 not in only:
        # Rendering needs the contact: publish the profile without the attribute steps.
        await publish(api.contact_profile(org, contact_id, {"name": "Maria Muster"}, []))
    for number, feature in features.items():
        if number not in only:
            continue
        try:
            await feature()
        except (ExpectationFailed, grpc.RpcError, TimeoutError) as exc:
            if not demo.results or demo.results[-1].ok:  # failed outside a step
                text = api.describe_rpc_error(exc) if isinstance(exc, grpc.RpcError) else str(exc)
                demo.results.append(StepResult(demo.feature, "setup", 0.0, False, text))
                print(f"   {RED}FAILED{RESET}: {text}")
            print(f"   {DIM}(rest of this feature skipped){RESET}")
        except ImportError as exc:
            demo.results.append(StepResult(demo.feature, "service contract", 0.0, False, str(exc)))
            print(f"   {RED}FAILED{RESET}: contract not available: {exc}")
    return summary(demo, time.perf_counter() - started)


#: How the demo's waits say that something did not happen in time.
_TIMED_OUT = ("not seen within", "no matching event on")


def summary(demo: Demo, total: float) -> int:
    failed = [r for r in demo.results if not r.ok]
    print(f"\n{BOLD}== Summary{RESET}")
    for r in demo.results:
        mark = f"{GREEN}ok{RESET}  " if r.ok else f"{RED}FAIL{RESET}"
        print(f"{mark} {r.seconds * 1000:8.0f} ms  {r.title}")
    print(f"{len(demo.results) - len(failed)} passed, {len(failed)} failed in {total:.1f}s")
    if any(marker in r.detail for r in failed for marker in _TIMED_OUT):
        print(
            f"{DIM}Events not seen in time: if this broker has old traffic (e.g. a benchmark's "
            "100k profiles), the stack's consumer groups may still be replaying it. Restart "
            f"the stack with INBOX_RUN_ISOLATION=<name> (see docs/operations.md).{RESET}"
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="inbox-demo",
        description="Walk through every PRODUCT.md feature against the running stack "
        "(start it with `make run` or `make up`).",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("INBOX_DEMO_TIMEOUT", "20")),
        help="seconds to wait for each asynchronous outcome (default 20)",
    )
    parser.add_argument(
        "--only",
        default="1,2,3,4",
        help="features to walk through: 1 remove assignment, 2 contact attributes, "
        "3 saved replies, 4 automatic assignment (default: all)",
    )
    args = parser.parse_args(argv)
    only = {int(n) for n in args.only.split(",") if n.strip()}
    if not only or not only <= set(NEEDS):
        parser.error("--only takes a comma-separated subset of 1,2,3,4")

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(run(args.timeout, only))


if __name__ == "__main__":
    sys.exit(main())

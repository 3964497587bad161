"""Poison on every topic routing consumes (issue 12): dead-lettered with the right reason, the
partition goes on, the next event on the same key applies; binary-mode events and events with
unknown fields are applied."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from inbox_contracts import utc_now
from inbox_contracts.topics import CONVERSATIONS, MESSAGES, PRESENCE, ROUTING, ROUTING_COMMANDS
from inbox_testing import TopicProbe, wait_until
from inbox_testing.poison import (
    expect_parked,
    poison_cases,
    send_binary,
    send_poison,
    with_unknown_fields,
)
from routing_testing import assigned, inbound, signed_in, signed_out

from .test_delivery_on_stack import converged

pytestmark = pytest.mark.infra


async def test_poison_is_parked_per_topic_and_what_follows_on_the_key_applies(
    stack,
    client,
    unique,  # type: ignore[no-untyped-def]
) -> None:
    org, agent, conv, other = unique("org"), unique("agent"), unique("conv"), unique("conv")
    await client.enable(org)
    t0 = utc_now()
    ms = timedelta(milliseconds=1)
    send = stack.producer.send_and_wait
    async with (
        TopicProbe(stack.infra.kafka_bootstrap, MESSAGES.dead_letter) as messages_dlq,
        TopicProbe(stack.infra.kafka_bootstrap, CONVERSATIONS.dead_letter) as conversations_dlq,
        TopicProbe(stack.infra.kafka_bootstrap, PRESENCE.dead_letter) as presence_dlq,
        TopicProbe(stack.infra.kafka_bootstrap, ROUTING_COMMANDS.dead_letter) as commands_dlq,
        TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as decisions,
    ):
        # presence: poison, then a binary-mode sign-in on the same key
        await send_poison(
            stack.producer, PRESENCE.name, agent.encode(), poison_cases(signed_in(org, agent, t0))
        )
        await send_binary(
            stack.producer, PRESENCE.name, agent.encode(), signed_in(org, agent, t0 + ms)
        )
        # messages: poison, then an inbound with unknown fields; another conversation in binary mode
        await send_poison(
            stack.producer, MESSAGES.name, conv.encode(), poison_cases(inbound(org, conv, t0))
        )
        await send(
            MESSAGES.name, with_unknown_fields(inbound(org, conv, t0 + 2 * ms)), key=conv.encode()
        )
        await send_binary(
            stack.producer, MESSAGES.name, other.encode(), inbound(org, other, t0 + 2 * ms)
        )
        # conversations: poison, then a binary-mode assignment
        await send_poison(
            stack.producer,
            CONVERSATIONS.name,
            conv.encode(),
            poison_cases(assigned(org, conv, agent, t0)),
        )
        await send_binary(
            stack.producer,
            CONVERSATIONS.name,
            conv.encode(),
            assigned(org, conv, agent, t0 + 3 * ms),
        )
        # the internal command topic refuses garbage too
        await send(ROUTING_COMMANDS.name, b"{garbage", key=agent.encode(), partition=0)

        for probe, key in ((messages_dlq, conv), (conversations_dlq, conv), (presence_dlq, agent)):
            dead = await expect_parked(probe, key.encode())
            unknown = next(r for r in dead if dict(r.headers)["x-dlq-reason"] == b"unknown_type")
            error = dict(unknown.headers)["x-dlq-error"].decode()
            assert "valid types:" in error and ".v1" in error.split("valid types:")[1]
        [command] = await commands_dlq.wait_for(lambda r: r.key == agent.encode(), timeout=30)
        assert dict(command.headers)["x-dlq-reason"] == b"not_json"

        # applied: the unknown-fields inbound and the binary-mode ones
        await wait_until(
            lambda: converged(client, org, {conv: ("NEW", agent), other: ("NEW", "")}), timeout=30
        )
        # presence: a sign-out with unknown fields removes the assignment (a decision)
        await send(
            PRESENCE.name,
            with_unknown_fields(signed_out(org, agent, t0 + 4 * ms)),
            key=agent.encode(),
        )
        [decision] = await decisions.wait_for(
            lambda r: json.loads(r.value)["subject"] == conv, timeout=30
        )
    assert json.loads(decision.value)["data"]["previous_assignee_id"] == agent
    await wait_until(lambda: converged(client, org, {conv: ("NEW", "")}), timeout=30)

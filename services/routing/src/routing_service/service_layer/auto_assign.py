"""The conversation owner's hook for automatic assignment (PRODUCT.md §4).

Two duties, both as the one writer of its conversations:
- tell the dispatcher what changed: after every re-fold, a conversation whose dispatch view
  (queue, assignee, channel, waiting period) changed is published on the dispatch topic at
  once. A conversation waiting as of event time t that this owner has not seen presence
  progress reach yet carries ``presence_until = t``: the dispatcher holds it until the
  presence progress relayed on its own partition reaches t. Every presence event up to t is
  ahead of that progress record in the dispatch stream (routing's presence consumer forwards
  them before it relays the progress there), so the dispatcher judges eligibility as of t and
  never hands the conversation to an agent who went Away or signed out before it. (Holding
  it here instead, until this owner's relayed progress reached t, cost one more owner batch
  and publish on the path: README, "Benchmark");
- review proposals: accept one only while the conversation is in the very waiting period,
  on the channel, it was proposed for, and the agent is signed in per routing's presence
  timeline; an accepted one becomes a journal entry (the assignment, id = proposal id) and a
  ``ConversationAutoAssigned`` event. Every proposal is answered on the dispatch topic, so a
  refused one frees the agent's slot at once.

Everything is published before the owner's offsets are committed. A crash in between
redelivers the proposal: if its entry was journaled, it is accepted again (same id, same
event), else reviewed again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from inbox_contracts import CloudEvent, EncodedEvent, encode_event, json_time
from inbox_contracts.events import (
    AssignmentProposed,
    ConversationAutoAssigned,
    ConversationDispatchChanged,
    ConversationsDispatchChanged,
    ProposalRefusal,
)
from inbox_contracts.events.dispatch import MAX_DISPATCH_CHANGES
from inbox_kit.ids import name_based_id

from routing_service.domain.auto_assign import (
    DispatchView,
    auto_assignment,
    dispatch_view,
    latest_event_time,
    review,
    signed_out_at,
)
from routing_service.domain.model import (
    ConversationEntry,
    ConversationLog,
    FoldResult,
    PresenceEntry,
)
from routing_service.domain.values import value
from routing_service.service_layer.ports import AgentKey, ConversationKey

SOURCE = "/inbox/routing"
CHANGE_NAMESPACE = uuid.UUID("a4f1b2c3-5d6e-4f70-8a9b-0c1d2e3f4a5b")


class DispatchPublisher(Protocol):
    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        """Publish on inbox.routing.dispatch.v1 keyed by org (acks awaited)."""

    async def publish_auto_assigned(self, events: Sequence[EncodedEvent]) -> None:
        """Publish on inbox.routing.v1 keyed by conversation (acks awaited)."""


Timelines = Callable[[set[AgentKey]], Awaitable[dict[AgentKey, list[PresenceEntry]]]]


@value
class _Change:
    """A conversation's change for the dispatcher, not sent yet: the fields of its
    ``DispatchChange`` and what identifies it (its id as a single event)."""

    org_id: str
    fields: dict[str, Any]
    tag: str


@dataclass(frozen=True)
class _Answer:
    proposal: AssignmentProposed
    proposal_id: str
    refusal: ProposalRefusal | None = None
    signed_out_at: Any = None


class AutoAssigner:
    def __init__(
        self, publisher: DispatchPublisher, timelines: Timelines, *, batched: bool = True
    ) -> None:
        """``batched``: a batch's changes go out as one ``ConversationsDispatchChanged`` per
        org (up to ``MAX_DISPATCH_CHANGES``), else one ``ConversationDispatchChanged`` each
        (for dispatchers of a version that reads only those: README, "Automatic assignment")."""
        self._publisher = publisher
        self._timelines = timelines
        self._batched = batched
        self._views: dict[ConversationKey, tuple[int, DispatchView]] = {}
        self._published: dict[ConversationKey, DispatchView] = {}
        #: conversation -> the proposal to answer with its next view (accepted ones)
        self._answers: dict[ConversationKey, _Answer] = {}
        self._outbox: list[_Change] = []
        self._assigned: dict[str, EncodedEvent] = {}
        #: agent -> the conversations of this owner they hold (NEW or PENDING), per the folds
        self._holds: dict[AgentKey, set[ConversationKey]] = {}

    # -- observing the owner's folds ---------------------------------------------------------

    def observe(
        self, lg: ConversationLog, result: FoldResult, presence_final: datetime | None
    ) -> None:
        """Note the conversation's state after a fold; ``presence_final``: up to when the
        presence inputs are complete (None: unknown)."""
        if not result.state.exists:
            return
        key = (lg.org_id, lg.conversation_id)
        view = dispatch_view(lg, result)
        before = self._views.get(key)
        self._count_holder(key, before[1] if before is not None else None, view)
        self._views[key] = (lg.partition, view)
        answer = self._answers.pop(key, None)
        if answer is None and view.same_state(self._published.get(key)):
            return
        hold = view.at if view.waiting and not _reached(presence_final, view.at) else None
        self._published[key] = view
        self._outbox.append(self._change(lg, view, answer, presence_until=hold))

    def _count_holder(
        self, key: ConversationKey, before: DispatchView | None, after: DispatchView
    ) -> None:
        was, now = _holder(before), _holder(after)
        if was == now:
            return
        if was is not None:
            held = self._holds.get((key[0], was))
            if held is not None:
                held.discard(key)
                if not held:
                    del self._holds[(key[0], was)]
        if now is not None:
            self._holds.setdefault((key[0], now), set()).add(key)

    def forget(self, partitions: set[int]) -> None:
        for key in [k for k, (p, _) in self._views.items() if p in partitions]:
            holder = _holder(self._views[key][1])
            if holder is not None:
                self._holds.get((key[0], holder), set()).discard(key)
            del self._views[key]
            self._published.pop(key, None)
            self._answers.pop(key, None)

    def forget_keys(self, keys: Iterable[ConversationKey]) -> None:
        """Conversations the owner evicted from memory (folded again when loaded)."""
        for key in keys:
            self._views.pop(key, None)
            self._published.pop(key, None)
            self._answers.pop(key, None)

    # -- proposals ----------------------------------------------------------------------------

    async def review(
        self,
        proposals: Sequence[CloudEvent[AssignmentProposed]],
        logs: dict[ConversationKey, ConversationLog],
        known: dict[AgentKey, list[PresenceEntry]] | None = None,
    ) -> tuple[list[tuple[ConversationLog, ConversationEntry]], list[ConversationKey]]:
        """Accepted proposals' journal entries (to add and re-fold) and the keys to re-fold
        for accepted duplicates; refusals are answered at once. ``known``: the timelines of
        every proposed agent, read already (an agent missing from it has none); else read."""
        if known is None:
            known = await self._timelines({(e.data.org_id, e.data.agent_id) for e in proposals})
        timelines = known
        accepted: list[tuple[ConversationLog, ConversationEntry]] = []
        again: list[ConversationKey] = []
        #: accepted in this call, not in ``_holds`` until the re-fold
        taking: dict[AgentKey, int] = {}
        for event in proposals:
            p = event.data
            key = (p.org_id, p.conversation_id)
            lg = logs.get(key)
            if lg is None or lg.partition != p.partition:
                self._outbox.append(self._refusal_of_unknown(p, event.id))
                continue
            if event.id in lg.entries:  # accepted before a crash or a replay: answer again
                self._answers[key] = _Answer(p, event.id)
                self._assigned[event.id] = encode_assigned(p, event.id, lg.entries[event.id])
                again.append(key)
                continue
            current = self._views.get(key)
            view = current[1] if current is not None else None
            timeline = timelines.get((p.org_id, p.agent_id), [])
            out = signed_out_at(timeline)
            agent = (p.org_id, p.agent_id)
            refusal = review(
                view=view,
                waiting_cause=p.waiting_cause,
                channel_id=p.channel_id,
                agent_signed_out_at=out,
                agent_held=len(self._holds.get(agent, ())) + taking.get(agent, 0),
                capacity=p.capacity,
            )
            if view is None:
                self._outbox.append(self._refusal_of_unknown(p, event.id))
                continue
            if refusal is not None:
                answer = _Answer(p, event.id, ProposalRefusal(refusal.value), out)
                self._outbox.append(self._change(lg, view, answer))
                continue
            entry = auto_assignment(
                proposal_id=event.id,
                agent_id=p.agent_id,
                reason=p.reason.value,
                cause_event_id=p.cause_event_id,
                cause_event_type=p.cause_event_type,
                proposed_at=p.occurred_at,
                known=[latest_event_time(lg), *(t.occurred_at for t in timeline)],
            )
            accepted.append((lg, entry))
            taking[agent] = taking.get(agent, 0) + 1
            self._answers[key] = _Answer(p, event.id)
            self._assigned[event.id] = encode_assigned(p, event.id, entry)
        return accepted, again

    @property
    def assigning(self) -> bool:
        """``ConversationAutoAssigned`` events wait for the next ``flush``."""
        return bool(self._assigned)

    async def flush(self) -> None:
        """Publish what the last folds and reviews produced (before offsets are committed).
        The two topics are independent, so both publishes are in flight at once (one round
        trip of acks, not two)."""
        assigned = list(self._assigned.values())
        out = list(self._outbox)
        sends: list[Awaitable[None]] = []
        if assigned:
            sends.append(self._publisher.publish_auto_assigned(assigned))
        if out:
            sends.append(self._publisher.publish_dispatch_inputs(self._events(out)))
        if not sends:
            return
        await asyncio.gather(*sends)
        for e in assigned:
            self._assigned.pop(e.id, None)
        del self._outbox[: len(out)]

    # -- events ---------------------------------------------------------------------------------

    def _events(self, changes: Sequence[_Change]) -> list[CloudEvent[Any]]:
        if not self._batched:
            return [
                CloudEvent.wrap(
                    ConversationDispatchChanged.model_validate({"org_id": c.org_id, **c.fields}),
                    source=SOURCE,
                    event_id=name_based_id(CHANGE_NAMESPACE, c.tag),
                )
                for c in changes
            ]
        by_org: dict[str, list[_Change]] = {}
        for c in changes:
            by_org.setdefault(c.org_id, []).append(c)
        events: list[CloudEvent[Any]] = []
        for org_id, of_org in by_org.items():
            for i in range(0, len(of_org), MAX_DISPATCH_CHANGES):
                chunk = of_org[i : i + MAX_DISPATCH_CHANGES]
                # validated from plain values in one call (pydantic's core, not one model
                # built in Python per change)
                data = ConversationsDispatchChanged.model_validate(
                    {
                        "org_id": org_id,
                        "changes": [c.fields for c in chunk],
                        "occurred_at": max(c.fields["occurred_at"] for c in chunk),
                    }
                )
                tag = "\n".join(c.tag for c in chunk)
                events.append(
                    CloudEvent.wrap(
                        data, source=SOURCE, event_id=name_based_id(CHANGE_NAMESPACE, tag)
                    )
                )
        return events

    def _change(
        self,
        lg: ConversationLog,
        view: DispatchView,
        answer: _Answer | None,
        *,
        presence_until: datetime | None = None,
    ) -> _Change:
        cause_id, cause_type = view.cause
        proposal_id = answer.proposal_id if answer is not None else None
        refusal = answer.refusal if answer is not None else None
        fields: dict[str, Any] = {
            "conversation_id": lg.conversation_id,
            "partition": lg.partition,
            "version": view.version,
            "queue": view.queue,
            "assignee_id": view.assignee_id,
            "channel_id": view.channel_id,
            "waiting_since": view.waiting_since,
            "waiting_cause": view.waiting_cause,
            "cause_event_id": cause_id or f"{lg.org_id}|{lg.conversation_id}|{view.version}",
            "cause_event_type": cause_type or "unknown",
            "proposal_id": proposal_id,
            "refusal": refusal,
            "refused_agent_id": answer.proposal.agent_id if answer and refusal else None,
            "agent_signed_out_at": answer.signed_out_at
            if answer and refusal is ProposalRefusal.AGENT_SIGNED_OUT
            else None,
            "presence_until": presence_until,
            "occurred_at": view.at,
        }
        tag = f"{lg.org_id}|{lg.conversation_id}|{view.version}|{proposal_id}|{refusal}"
        return _Change(lg.org_id, fields, tag)

    def _refusal_of_unknown(self, p: AssignmentProposed, proposal_id: str) -> _Change:
        """A proposal for a conversation this owner does not know: not waiting (here)."""
        fields: dict[str, Any] = {
            "conversation_id": p.conversation_id,
            "partition": p.partition,
            "version": 0,
            "queue": "NEW",
            "cause_event_id": proposal_id,
            "cause_event_type": AssignmentProposed.event_type,
            "proposal_id": proposal_id,
            "refusal": ProposalRefusal.NOT_WAITING,
            "occurred_at": p.occurred_at,
        }
        tag = f"{p.org_id}|{p.conversation_id}|unknown|{proposal_id}"
        return _Change(p.org_id, fields, tag)


def encode_assigned(
    p: AssignmentProposed, proposal_id: str, entry: ConversationEntry
) -> EncodedEvent:
    """The ``ConversationAutoAssigned`` of an accepted proposal, encoded once (one per
    assignment: no models built; the proposal was validated when consumed;
    ``test_proposal_encoding.py``: it decodes to the event built with the models)."""
    return encode_event(
        ConversationAutoAssigned,
        {
            "org_id": p.org_id,
            "occurred_at": json_time(entry.occurred_at),
            "conversation_id": p.conversation_id,
            "assignee_id": p.agent_id,
            "team": p.team,
            "reason": p.reason.value,
            "cause_event_id": p.cause_event_id,
            "cause_event_type": p.cause_event_type,
            "waiting_since": json_time(p.waiting_since),
        },
        event_id=proposal_id,
        source=SOURCE,
    )


def _reached(progress: datetime | None, at: datetime) -> bool:
    return progress is not None and at <= progress


def _holder(view: DispatchView | None) -> str | None:
    """Whom the conversation counts against (NEW or PENDING with an assignee)."""
    if view is None or view.queue == "RESOLVED":
        return None
    return view.assignee_id


def keys_of(items: Iterable[tuple[ConversationLog, ConversationEntry]]) -> list[ConversationKey]:
    return [(lg.org_id, lg.conversation_id) for lg, _ in items]

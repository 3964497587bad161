"""gRPC servicer of ``inbox.routing.v1.RoutingService`` (thin: validate, call, translate)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from inbox.routing.v1 import routing_pb2 as pb
from inbox.routing.v1 import routing_pb2_grpc
from inbox_contracts import utc_now
from inbox_kit.auth import current_principal
from inbox_kit.errors import InvalidArgument, NotFound
from inbox_kit.timestamps import timestamp
from inbox_kit.validation import PageTokens, optional_id, page_size, require_id

from routing_service.domain.audit import audit_page, segments_for_page
from routing_service.domain.dispatch import AssignReason
from routing_service.domain.model import (
    AuditEntry,
    AuditKind,
    Queue,
    Reason,
    SettingChange,
    SettingsHistory,
)
from routing_service.entrypoints.assignment_api import (
    AssignmentRpcs,
    AssignmentStore,
    SettingsPublisher,
)
from routing_service.service_layer.ports import ConversationView, ReadStore

_QUEUE_TO_PB = {
    Queue.NEW: pb.CONVERSATION_QUEUE_NEW,
    Queue.PENDING: pb.CONVERSATION_QUEUE_PENDING,
    Queue.RESOLVED: pb.CONVERSATION_QUEUE_RESOLVED,
}
_PB_TO_QUEUE = {v: k for k, v in _QUEUE_TO_PB.items()}
_REASON_TO_PB = {
    Reason.R1_SIGNED_OUT: pb.AUTO_UNASSIGN_REASON_AGENT_SIGNED_OUT,
    Reason.R2_MOVED_TO_NEW: pb.AUTO_UNASSIGN_REASON_MOVED_TO_NEW_WHILE_SIGNED_OUT,
}
_KIND_TO_PB = {
    AuditKind.CREATED: pb.AUDIT_ENTRY_KIND_CREATED,
    AuditKind.QUEUE_MOVED: pb.AUDIT_ENTRY_KIND_QUEUE_MOVED,
    AuditKind.ASSIGNED: pb.AUDIT_ENTRY_KIND_ASSIGNED,
    AuditKind.UNASSIGNED: pb.AUDIT_ENTRY_KIND_UNASSIGNED,
    AuditKind.AUTO_UNASSIGNED: pb.AUDIT_ENTRY_KIND_AUTO_UNASSIGNED,
    AuditKind.AUTO_ASSIGNED: pb.AUDIT_ENTRY_KIND_AUTO_ASSIGNED,
}
_ASSIGN_REASON_TO_PB = {
    AssignReason.CONVERSATION_WAITING.value: pb.AUTO_ASSIGN_REASON_CONVERSATION_WAITING,
    AssignReason.AGENT_AVAILABLE.value: pb.AUTO_ASSIGN_REASON_AGENT_AVAILABLE,
}
MAX_PAGE = 500
CONVERSATION_PAGES = PageTokens("routing.conversations", 1)
AUDIT_PAGES = PageTokens("routing.audit", 1)


def _ts(dt: datetime | None) -> Timestamp | None:
    return None if dt is None else timestamp(dt)


def conversation_pb(v: ConversationView) -> pb.Conversation:
    s = v.state
    return pb.Conversation(
        conversation_id=s.conversation_id,
        queue=_QUEUE_TO_PB[s.queue] if s.queue else pb.CONVERSATION_QUEUE_UNSPECIFIED,
        assignee_id=s.assignee_id or "",
        assigned_at=_ts(s.assigned_at),
        assigned_by=s.assigned_by or "",
        assignee_signed_in_at_assignment=bool(s.assignee_signed_in_at_assignment),
        updated_at=_ts(s.updated_at),
    )


def audit_pb(a: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        kind=_KIND_TO_PB[a.kind],
        occurred_at=_ts(a.occurred_at),
        actor=a.actor,
        cause_event_id=a.event_id,
        cause_event_type=a.event_type,
        from_queue=_QUEUE_TO_PB[a.from_queue]
        if a.from_queue
        else pb.CONVERSATION_QUEUE_UNSPECIFIED,
        to_queue=_QUEUE_TO_PB[a.to_queue] if a.to_queue else pb.CONVERSATION_QUEUE_UNSPECIFIED,
        assignee_id=a.assignee_id or "",
        previous_assignee_id=a.previous_assignee_id or "",
        reason=_REASON_TO_PB[a.reason] if a.reason else pb.AUTO_UNASSIGN_REASON_UNSPECIFIED,
        decision_id=a.decision_id or "",
        auto_assign_reason=_ASSIGN_REASON_TO_PB.get(
            a.assign_reason or "", pb.AUTO_ASSIGN_REASON_UNSPECIFIED
        ),
    )


class RoutingServicer(AssignmentRpcs, routing_pb2_grpc.RoutingServiceServicer):
    def __init__(
        self,
        store: ReadStore,
        assignment: AssignmentStore,
        publisher: SettingsPublisher,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        AssignmentRpcs.__init__(self, assignment, publisher)
        self._store = store
        #: Wall clock: which archived audit entries have expired.
        self._clock = clock

    async def GetRoutingSettings(
        self, request: pb.GetRoutingSettingsRequest, context: Any
    ) -> pb.RoutingSettings:
        org_id = current_principal().org_id
        return _settings_pb((await self._store.settings([org_id])).get(org_id))

    async def UpdateRoutingSettings(
        self, request: pb.UpdateRoutingSettingsRequest, context: Any
    ) -> pb.RoutingSettings:
        principal = current_principal()
        principal.require_admin()
        change = SettingChange(utc_now(), request.remove_assignment_on_sign_out, principal.agent_id)
        return _settings_pb(await self._store.append_setting(principal.org_id, change))

    async def _view(self, conversation_id: str) -> ConversationView:
        org_id = current_principal().org_id
        view = await self._store.get_view(org_id, require_id("conversation_id", conversation_id))
        if view is None:
            raise NotFound(
                f"conversation {conversation_id!r} not found", reason="CONVERSATION_NOT_FOUND"
            )
        return view

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: Any
    ) -> pb.GetConversationResponse:
        view = await self._view(request.conversation_id)
        return pb.GetConversationResponse(conversation=conversation_pb(view))

    async def ListConversations(
        self, request: pb.ListConversationsRequest, context: Any
    ) -> pb.ListConversationsResponse:
        org_id = current_principal().org_id
        if request.queue not in (0, *_PB_TO_QUEUE):
            raise InvalidArgument("queue", "unknown queue")
        assignee_id = optional_id("assignee_id", request.assignee_id)
        size = page_size(request.page_size, default=50, maximum=MAX_PAGE)
        cursor = CONVERSATION_PAGES.decode(request.page_token)
        queue = _PB_TO_QUEUE[request.queue].value if request.queue else None
        page = await self._store.list_views(
            org_id,
            queue=queue,
            assignee_id=assignee_id or None,
            page_size=size,
            page_token=cursor.text(0) if cursor else "",
        )
        return pb.ListConversationsResponse(
            conversations=[conversation_pb(v) for v in page.views],
            next_page_token=CONVERSATION_PAGES.encode([page.next_token]) if page.next_token else "",
        )

    async def GetAuditTrail(
        self, request: pb.GetAuditTrailRequest, context: Any
    ) -> pb.GetAuditTrailResponse:
        size = page_size(request.page_size, default=100, maximum=MAX_PAGE)
        cursor = AUDIT_PAGES.decode(request.page_token)
        # positions are absolute (from the conversation's first entry): a token stays valid
        # when entries move to the archive or expire (domain.audit)
        start = cursor.offset(0) if cursor else 0
        view = await self._view(request.conversation_id)
        now = self._clock()
        needed = segments_for_page(view.archive, start, size, now)
        found = (
            await self._store.audit_segments(
                view.state.org_id, view.state.conversation_id, [s.first for s in needed]
            )
            if needed
            else {}
        )
        chosen, after = audit_page(
            view.archive,
            view.audit,
            {s.first: found.get(s.first) for s in needed},
            start,
            size,
            now,
        )
        return pb.GetAuditTrailResponse(
            entries=[audit_pb(a) for a in chosen],
            next_page_token=AUDIT_PAGES.encode([after]) if after is not None else "",
        )


def _settings_pb(history: SettingsHistory | None) -> pb.RoutingSettings:
    current = history.current() if history else None
    if current is None:
        return pb.RoutingSettings(remove_assignment_on_sign_out=False)
    return pb.RoutingSettings(
        remove_assignment_on_sign_out=current.remove_assignment_on_sign_out,
        updated_at=_ts(current.effective_from),
        updated_by=current.changed_by,
    )

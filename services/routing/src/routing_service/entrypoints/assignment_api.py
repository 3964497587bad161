"""The automatic-assignment RPCs of ``inbox.routing.v1.RoutingService`` (PRODUCT.md §4)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp
from inbox.routing.v1 import routing_pb2 as pb
from inbox_contracts import CloudEvent, utc_now
from inbox_contracts.events import AssignmentSettingsChanged
from inbox_kit.auth import current_principal
from inbox_kit.errors import InvalidArgument
from inbox_kit.timestamps import timestamp
from inbox_kit.validation import id_problem

from routing_service.domain.dispatch import AssignmentSettings

MAX_CAPACITY = 10_000
MAX_ID = 200
MAX_ENTRIES = 1000
SOURCE = "/inbox/routing"


class AssignmentStore(Protocol):
    async def get_settings(self, org_id: str) -> dict[str, Any] | None: ...
    async def append_settings(
        self, org_id: str, settings: AssignmentSettings, *, by: str, at: datetime
    ) -> dict[str, Any]: ...
    async def get_assignment_view(self, org_id: str) -> dict[str, Any] | None: ...


class SettingsPublisher(Protocol):
    async def publish_dispatch_inputs(self, events: Any) -> None: ...


def _ts(value: str | None) -> Timestamp | None:
    return timestamp(datetime.fromisoformat(value)) if value else None


def _capacity(field: str, value: int, *, zero_ok: bool = True) -> int | None:
    if value < 0 or value > MAX_CAPACITY or (value == 0 and not zero_ok):
        raise InvalidArgument(field, f"must be between {0 if zero_ok else 1} and {MAX_CAPACITY}")
    return value or None


def _ids(field: str, mapping: Mapping[str, Any]) -> None:
    if len(mapping) > MAX_ENTRIES:
        raise InvalidArgument(field, f"at most {MAX_ENTRIES} entries")
    for k, v in mapping.items():
        for part in (k, v) if isinstance(v, str) else (k,):
            problem = id_problem(part, MAX_ID)
            if problem is not None:
                raise InvalidArgument(field, f"ids {problem}")


def settings_from_request(r: pb.UpdateAssignmentSettingsRequest) -> AssignmentSettings:
    default = _capacity("default_capacity", r.default_capacity)
    _ids("team_capacities", r.team_capacities)
    _ids("channel_teams", r.channel_teams)
    teams: dict[str, int] = {}
    for team, cap in r.team_capacities.items():
        value = _capacity("team_capacities", cap)
        if value is not None:
            teams[team] = value
    return AssignmentSettings(r.enabled, default, teams, dict(r.channel_teams))


def settings_pb(doc: dict[str, Any] | None) -> pb.AssignmentSettings:
    current = (doc or {}).get("current")
    if not current:
        return pb.AssignmentSettings(enabled=False)
    return pb.AssignmentSettings(
        enabled=bool(current.get("enabled")),
        default_capacity=current.get("default_capacity") or 0,
        team_capacities=current.get("team_capacity") or {},
        channel_teams=current.get("channel_teams") or {},
        updated_at=_ts(current.get("updated_at")),
        updated_by=current.get("updated_by") or "",
    )


class AssignmentRpcs:
    """Mixed into the servicer: settings (audited), the waiting queue, agents' loads."""

    def __init__(self, store: AssignmentStore, publisher: SettingsPublisher) -> None:
        self._assignment = store
        self._settings_publisher = publisher

    async def GetAssignmentSettings(
        self, request: pb.GetAssignmentSettingsRequest, context: Any
    ) -> pb.AssignmentSettings:
        return settings_pb(await self._assignment.get_settings(current_principal().org_id))

    async def UpdateAssignmentSettings(
        self, request: pb.UpdateAssignmentSettingsRequest, context: Any
    ) -> pb.AssignmentSettings:
        principal = current_principal()
        principal.require_admin()
        settings = settings_from_request(request)
        at = utc_now()
        doc = await self._assignment.append_settings(
            principal.org_id, settings, by=principal.agent_id, at=at
        )
        # stored first, then announced to the dispatcher; if publishing fails the call fails
        # and a retry stores and announces the same value again
        event = CloudEvent.wrap(
            AssignmentSettingsChanged(
                org_id=principal.org_id,
                enabled=settings.enabled,
                default_capacity=settings.default_capacity,
                team_capacities=dict(settings.team_capacity),
                channel_teams=dict(settings.channel_teams),
                changed_by=principal.agent_id,
                occurred_at=at,
            ),
            source=SOURCE,
        )
        await self._settings_publisher.publish_dispatch_inputs([event])
        return settings_pb(doc)

    async def ListWaitingConversations(
        self, request: pb.ListWaitingConversationsRequest, context: Any
    ) -> pb.ListWaitingConversationsResponse:
        view = await self._assignment.get_assignment_view(current_principal().org_id) or {}
        return pb.ListWaitingConversationsResponse(
            conversations=[
                pb.WaitingConversation(
                    conversation_id=w["conversation_id"],
                    waiting_since=_ts(w.get("waiting_since")),
                    team=w.get("team") or "",
                    channel_id=w.get("channel_id") or "",
                    reason=w.get("reason") or "",
                    at_capacity=w.get("at_capacity", 0),
                    away=w.get("away", 0),
                    signed_out=w.get("signed_out", 0),
                )
                for w in view.get("waiting", [])
            ],
            total=view.get("waiting_total", 0),
            as_of=_ts(view.get("as_of")),
        )

    async def ListAgentLoads(
        self, request: pb.ListAgentLoadsRequest, context: Any
    ) -> pb.ListAgentLoadsResponse:
        view = await self._assignment.get_assignment_view(current_principal().org_id) or {}
        return pb.ListAgentLoadsResponse(
            agents=[
                pb.AgentLoad(
                    agent_id=a["agent_id"],
                    signed_in=a["signed_in"],
                    available=a["available"],
                    teams=a.get("teams", []),
                    held=a.get("held", 0),
                    capacity=a.get("capacity") or 0,
                    team_capacities=a.get("team_capacities") or {},
                )
                for a in view.get("agents", [])
            ],
            as_of=_ts(view.get("as_of")),
        )

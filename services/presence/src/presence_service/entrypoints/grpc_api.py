"""gRPC servicer: translate protobuf ↔ handler calls. No rules here."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from inbox.presence.v1 import presence_pb2 as pb
from inbox.presence.v1 import presence_pb2_grpc as pb_grpc
from inbox_contracts.events import Availability
from inbox_kit.auth import current_principal
from inbox_kit.errors import InvalidArgument
from inbox_kit.timestamps import set_timestamp, timestamp

from presence_service.domain.model import Session
from presence_service.service_layer import handlers
from presence_service.service_layer.handlers import Presence, PresenceView

Context = Any

_TO_PB = {
    Availability.AVAILABLE: pb.AVAILABILITY_AVAILABLE,
    Availability.AWAY: pb.AVAILABILITY_AWAY,
}
_FROM_PB = {v: k for k, v in _TO_PB.items()}


def _duration(value: timedelta) -> Duration:
    d = Duration()
    d.FromTimedelta(value)
    return d


def _session(s: Session) -> pb.Session:
    return pb.Session(
        session_id=s.session_id,
        started_at=timestamp(s.started_at),
        last_heartbeat_at=timestamp(s.last_heartbeat),
        expires_at=timestamp(s.expires_at),
        client_description=s.client_description,
    )


def _presence(v: PresenceView) -> pb.AgentPresence:
    msg = pb.AgentPresence(
        agent_id=v.agent_id,
        signed_in=v.signed_in,
        availability=_TO_PB[v.availability],
        sessions=[_session(s) for s in v.sessions],
    )
    if v.since is not None:
        set_timestamp(msg.since, v.since)
    return msg


class PresenceServicer(pb_grpc.PresenceServiceServicer):
    def __init__(self, presence: Presence) -> None:
        self._p = presence
        # fixed for the process: converted once, copied into every SignIn response
        self._heartbeat_interval = _duration(presence.timing.heartbeat_interval)
        self._session_timeout = _duration(presence.timing.session_timeout)

    async def SignIn(self, request: pb.SignInRequest, context: Context) -> pb.SignInResponse:
        session = await handlers.sign_in(self._p, current_principal(), request.client_description)
        response = pb.SignInResponse(
            session_id=session.session_id,
            heartbeat_interval=self._heartbeat_interval,
            session_timeout=self._session_timeout,
        )
        set_timestamp(response.expires_at, session.expires_at)
        return response

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        expires_at = await handlers.heartbeat(self._p, current_principal(), request.session_id)
        response = pb.HeartbeatResponse()
        set_timestamp(response.expires_at, expires_at)
        return response

    async def SignOut(self, request: pb.SignOutRequest, context: Context) -> pb.SignOutResponse:
        signed_out = await handlers.sign_out(self._p, current_principal(), request.session_id)
        return pb.SignOutResponse(agent_signed_out=signed_out)

    async def ForceSignOut(
        self, request: pb.ForceSignOutRequest, context: Context
    ) -> pb.ForceSignOutResponse:
        ended = await handlers.force_sign_out(self._p, current_principal(), request.agent_id)
        return pb.ForceSignOutResponse(ended_sessions=ended)

    async def SetAvailability(
        self, request: pb.SetAvailabilityRequest, context: Context
    ) -> pb.SetAvailabilityResponse:
        availability = _FROM_PB.get(request.availability)
        if availability is None:
            raise InvalidArgument("availability", "must be AVAILABLE or AWAY")
        value = await handlers.set_availability(self._p, current_principal(), availability)
        return pb.SetAvailabilityResponse(
            availability=_TO_PB[value.availability], changed_at=timestamp(value.changed_at)
        )

    async def GetPresence(
        self, request: pb.GetPresenceRequest, context: Context
    ) -> pb.GetPresenceResponse:
        views = await handlers.get_presence(self._p, current_principal(), list(request.agent_ids))
        return pb.GetPresenceResponse(presences=[_presence(v) for v in views])

    async def ListSignedInAgents(
        self, request: pb.ListSignedInAgentsRequest, context: Context
    ) -> pb.ListSignedInAgentsResponse:
        views, token = await handlers.list_signed_in(
            self._p, current_principal(), request.page_size, request.page_token
        )
        return pb.ListSignedInAgentsResponse(
            agents=[_presence(v) for v in views], next_page_token=token
        )

"""Wire the edge: settings → gRPC channels to the four services → the Starlette app (the
channels open in the app's lifespan; nothing connects at import time)."""

from __future__ import annotations

from starlette.applications import Starlette

from console_service.adapters.grpc_backends import GrpcBackends
from console_service.entrypoints.http_app import create_app
from console_service.settings import ConsoleSettings


def bootstrap(settings: ConsoleSettings) -> Starlette:
    backends = GrpcBackends(
        {
            "presence": settings.presence_address,
            "routing": settings.routing_address,
            "contacts": settings.contacts_address,
            "replies": settings.replies_address,
        },
        timeout=settings.grpc_timeout_seconds,
    )
    return create_app(settings, backends)

"""Wire the edge: settings → Starlette app (gRPC channels open in the app's lifespan)."""

from __future__ import annotations

from starlette.applications import Starlette

from console_service.entrypoints.http_app import create_app
from console_service.settings import ConsoleSettings


def bootstrap(settings: ConsoleSettings) -> Starlette:
    return create_app(settings)

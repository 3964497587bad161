"""The ``main()`` of a service process: serve, and fail in one clear line when a dependency
is unreachable at start (instead of a 40-line traceback).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka.errors import KafkaConnectionError
from pymongo.errors import ConnectionFailure

from inbox_kit.settings import ServiceSettings
from inbox_kit.tracing import configure_tracing

log = logging.getLogger(__name__)

#: Exit status of a process that could not reach a dependency at start (EX_UNAVAILABLE).
EXIT_UNAVAILABLE = 69


def redacted_uri(uri: str) -> str:
    """``uri`` without its password (safe to log)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def outage(error: BaseException) -> str | None:
    """A short description when ``error`` means MongoDB or Kafka is unreachable, else None."""
    if isinstance(error, ConnectionFailure):
        reason = str(error).split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0]
        return f"MongoDB unreachable ({type(error).__name__}: {reason[:300]})"
    if isinstance(error, KafkaConnectionError):
        return f"Kafka unreachable ({str(error)[:300]})"
    return None


def unreachable_dependency(error: BaseException, settings: ServiceSettings) -> str | None:
    """One line naming the dependency ``error`` says is unreachable, or None if it is not that."""
    what = outage(error)
    if what is None:
        return None
    if isinstance(error, ConnectionFailure):
        return f"cannot start: {what} at {redacted_uri(settings.mongodb_uri)}"
    return f"cannot start: {what} at {settings.kafka_bootstrap_servers}"


def run_service(settings: ServiceSettings, serve: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``serve()`` until it returns (SIGTERM); exit 69 with one log line on an outage.

    Tracing is set up first, from the ``OTEL_*`` variables (``inbox_kit.tracing``)."""
    configure_tracing(settings.service_name)
    try:
        asyncio.run(serve())
    except Exception as error:
        line = unreachable_dependency(error, settings)
        if line is None:
            raise
        log.critical(line, extra={"error_type": type(error).__name__})
        raise SystemExit(EXIT_UNAVAILABLE) from None

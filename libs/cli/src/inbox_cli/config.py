"""Where the four services listen and how they are configured when run locally.

One source of truth for ``inbox-run`` (which starts them), ``inboxctl`` and the demo (which
call them). Defaults are the documented ports; every value is overridable by environment:

- ``<PREFIX>GRPC_PORT`` / ``<PREFIX>METRICS_PORT`` (the services' own variables, e.g.
  ``ROUTING_GRPC_PORT``), or ``INBOX_PORT_OFFSET`` added to every default port;
- ``INBOX_<SVC>_ADDRESS`` (e.g. ``INBOX_ROUTING_ADDRESS=10.0.0.5:7062``) for a remote service;
- ``INBOX_JWT_SECRET``: the HS256 secret shared by all services and the CLI (default: the
  kit's development secret);
- ``INBOX_KAFKA_BOOTSTRAP`` / ``INBOX_MONGODB_URI``: infrastructure (default: the devstack's).

Besides the four gRPC services, ``inbox-run`` starts the console edge (HTTP, ``CONSOLE_HTTP_PORT``,
default 8080), which calls them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from inbox_kit.settings import ServiceSettings

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    prefix: str
    default_grpc_port: int
    default_metrics_port: int
    grpc_service: str
    #: Settings (without prefix) naming the Kafka consumer groups it joins → their defaults.
    consumer_groups: dict[str, str]
    #: ``grpc`` (health: grpc.health.v1) or ``http`` (health: ``GET /healthz``; the console).
    protocol: str = "grpc"

    @property
    def port_setting(self) -> str:
        """The setting (without prefix) of the port it listens on."""
        return "GRPC_PORT" if self.protocol == "grpc" else "HTTP_PORT"

    @property
    def host_setting(self) -> str:
        return "GRPC_HOST" if self.protocol == "grpc" else "HTTP_HOST"

    @property
    def module(self) -> str:
        return f"{self.name}_service"

    def grpc_port(self, env: Mapping[str, str] | None = None) -> int:
        env = os.environ if env is None else env
        return _port(env, f"{self.prefix}{self.port_setting}", self.default_grpc_port)

    def metrics_port(self, env: Mapping[str, str] | None = None) -> int:
        env = os.environ if env is None else env
        if not self.default_metrics_port:
            return 0
        return _port(env, f"{self.prefix}METRICS_PORT", self.default_metrics_port)

    def address(self, env: Mapping[str, str] | None = None) -> str:
        env = os.environ if env is None else env
        explicit = env.get(f"INBOX_{self.name.upper()}_ADDRESS", "").strip()
        return explicit or f"{HOST}:{self.grpc_port(env)}"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if raw:
        return int(raw)
    return default + int(env.get("INBOX_PORT_OFFSET", "0") or "0")


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("presence", "PRESENCE_", 7061, 9461, "inbox.presence.v1.PresenceService", {}),
    ServiceSpec(
        "routing",
        "ROUTING_",
        7062,
        9462,
        "inbox.routing.v1.RoutingService",
        {
            "CONSUMER_GROUP": "routing",
            "PRESENCE_CONSUMER_GROUP": "routing-presence",
            "DISPATCHER_CONSUMER_GROUP": "routing-dispatcher",
        },
    ),
    ServiceSpec(
        "contacts",
        "CONTACTS_",
        7063,
        9463,
        "inbox.contacts.v1.ContactsService",
        {"CONSUMER_GROUP": "contacts"},
    ),
    ServiceSpec(
        "replies",
        "REPLIES_",
        7064,
        9464,
        "inbox.replies.v1.RepliesService",
        {"CONSUMER_GROUP": "replies"},
    ),
)
BY_NAME: dict[str, ServiceSpec] = {s.name: s for s in SERVICES}
#: The console edge: HTTP/JSON for browsers over the four gRPC APIs; serves the web console.
CONSOLE = ServiceSpec("console", "CONSOLE_", 8080, 0, "", {}, protocol="http")
#: Everything ``inbox-run`` starts, in start order (the console last: it calls the others).
RUNNABLE: tuple[ServiceSpec, ...] = (*SERVICES, CONSOLE)


def jwt_secret(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    explicit = env.get("INBOX_JWT_SECRET", "").strip()
    if explicit:
        return explicit
    default = ServiceSettings.model_fields["jwt_secret"].default
    return str(default.get_secret_value())

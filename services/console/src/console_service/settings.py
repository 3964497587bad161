"""Configuration from ``CONSOLE_*`` environment variables."""

from __future__ import annotations

from inbox_kit.auth import DEVELOPMENT_MODE_ENV, DEVELOPMENT_SECRET
from inbox_kit.settings import service_config
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings


class ConsoleSettings(BaseSettings):
    """The edge has no Kafka or database of its own: only the gRPC services it calls."""

    model_config = service_config("CONSOLE_")

    service_name: str = Field("console", description="Name in logs (`service`).")
    http_host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP port; 0 picks a free port.")
    presence_address: str = Field("127.0.0.1:7061", description="presence gRPC host:port.")
    routing_address: str = Field("127.0.0.1:7062", description="routing gRPC host:port.")
    contacts_address: str = Field("127.0.0.1:7063", description="contacts gRPC host:port.")
    replies_address: str = Field("127.0.0.1:7064", description="replies gRPC host:port.")
    grpc_timeout_seconds: float = Field(10.0, gt=0, description="Deadline of each gRPC call.")
    dev_mode: bool = Field(
        False,
        validation_alias=AliasChoices("dev_mode", "CONSOLE_DEV_MODE", DEVELOPMENT_MODE_ENV),
        description="Development mode (CONSOLE_DEV_MODE, or the stack-wide "
        "INBOX_DEVELOPMENT_MODE): enables POST /api/dev/login, which mints tokens with the "
        "shared HS256 secret. Never set in production (tokens come from the IdP there).",
    )
    jwt_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_SECRET),
        description="HS256 secret the dev login signs with (dev mode only; the edge never "
        "verifies tokens itself — the services do).",
    )
    dev_token_ttl_seconds: int = Field(
        1800, ge=60, le=86_400, description="Lifetime (exp - iat) of dev-login tokens."
    )
    static_dir: str = Field(
        "",
        description="Directory of the built web console (index.html); empty: the package's "
        "web/dist next to the sources, if built.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR (JSON logs).")

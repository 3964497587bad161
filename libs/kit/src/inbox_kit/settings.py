"""Settings shared by every service. Each service subclasses with its own env prefix.

Example: ``class PresenceSettings(ServiceSettings): model_config = service_config("PRESENCE_")``
reads ``PRESENCE_GRPC_PORT``, ``PRESENCE_KAFKA_BOOTSTRAP_SERVERS`` and so on.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from inbox_kit.auth import DEFAULT_MAX_LIFETIME_SECONDS, DEVELOPMENT_MODE_ENV, DEVELOPMENT_SECRET


def service_config(env_prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=env_prefix, extra="ignore", frozen=True)


class ServiceSettings(BaseSettings):
    model_config = service_config("INBOX_")

    service_name: str = Field(
        "inbox", description="Name in logs (`service`), metrics and client ids."
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka brokers, comma-separated host:port."
    )
    mongodb_uri: str = Field(
        "mongodb://127.0.0.1:27017/", description="MongoDB connection string (a secret in k8s)."
    )
    mongodb_database: str = Field("inbox", description="Database name; one per service.")
    grpc_host: str = Field(
        "127.0.0.1", description="Address the gRPC and metrics servers bind (0.0.0.0 in pods)."
    )
    grpc_port: int = Field(50051, ge=0, le=65535, description="0 picks a free port.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics; 0 disables.")
    jwt_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_SECRET),
        description=(
            "HS256 secret for development/test bearer tokens. The default is refused unless "
            "INBOX_DEVELOPMENT_MODE=1 (or a JWKS is set, which then disables HS256)."
        ),
    )
    jwt_jwks_url: str = Field(
        "", description="Identity provider's JWKS URL: RS256/ES256 tokens, keys by kid."
    )
    jwt_jwks_file: str = Field("", description="A JWKS JSON file instead of a URL.")
    jwt_issuer: str = Field("", description="When set, tokens must carry this iss.")
    jwt_audience: str = Field("", description="When set, tokens must carry this aud.")
    jwt_max_lifetime_seconds: int = Field(
        DEFAULT_MAX_LIFETIME_SECONDS,
        gt=0,
        description="Longest accepted token lifetime (exp - iat, or exp - now without iat).",
    )
    development_mode: bool = Field(
        False,
        validation_alias=AliasChoices("development_mode", DEVELOPMENT_MODE_ENV),
        description="INBOX_DEVELOPMENT_MODE=1: accept the built-in development secret.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR (JSON logs).")
    shutdown_grace_seconds: float = Field(
        10.0, description="On SIGTERM: how long in-flight gRPC calls may finish."
    )
    event_time_max_skew_seconds: float = Field(
        300.0,
        gt=0,
        description="A consumed event whose time is more than this ahead of the consumer's "
        "clock is dead-lettered with reason event_time_in_future.",
    )

    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.event_time_max_skew_seconds)

    @property
    def env_prefix(self) -> str:
        return str(self.model_config.get("env_prefix", ""))

    @property
    def jwt_secret_value(self) -> str:
        return self.jwt_secret.get_secret_value()

"""Configuration of the local devstack, read from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DevstackError

HOST = "127.0.0.1"


def find_repo_root(start: Path | None = None) -> Path:
    """Walk up from this package (or ``start``) to the directory holding ``uv.lock``.

    Falls back to the current working directory when no ``uv.lock`` is found
    (e.g. when the package is installed outside the monorepo).
    """
    here = (start or Path(__file__)).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "uv.lock").is_file():
            return candidate
    return Path.cwd().resolve()


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DevstackError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise DevstackError(f"{name}={raw!r} must be positive")
    return value


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise DevstackError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class DevstackConfig:
    """Where the devstack keeps its files and which loopback ports it serves on.

    Every path below derives from :attr:`devstack_dir`::

        <devstack_dir>/kafka/        pom.xml, libs/, server.properties, log4j2.properties,
                                     cluster.id
        <devstack_dir>/bin/          ferretdb-runner (built from the package's Go source)
        <devstack_dir>/build/        scratch for that build: a patched copy of the FerretDB
                                     module and the runner sources (see ferret.py)
        <devstack_dir>/data/kafka    Kafka log.dirs
        <devstack_dir>/data/ferretdb FerretDB SQLite files
        <devstack_dir>/logs/         kafka.log, ferretdb.log
        <devstack_dir>/run/          kafka.pid, ferretdb.pid, devstack.lock
    """

    devstack_dir: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    mongo_port: int = 27017
    topic_partitions: int = 6
    kafka_start_timeout: float = 240.0
    mongo_start_timeout: float = 60.0
    host: str = field(default=HOST)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DevstackConfig:
        """Build a config from ``DEVSTACK_*`` environment variables (all optional)."""
        env = os.environ if environ is None else environ
        raw_dir = env.get("DEVSTACK_DIR", "").strip()
        devstack_dir = Path(raw_dir) if raw_dir else find_repo_root() / ".devstack"
        cfg = cls(
            devstack_dir=devstack_dir.expanduser().resolve(),
            kafka_port=_int_env(env, "DEVSTACK_KAFKA_PORT", 9092),
            kafka_controller_port=_int_env(env, "DEVSTACK_KAFKA_CONTROLLER_PORT", 9093),
            mongo_port=_int_env(env, "DEVSTACK_MONGO_PORT", 27017),
            topic_partitions=_int_env(env, "DEVSTACK_TOPIC_PARTITIONS", 6),
            kafka_start_timeout=_float_env(env, "DEVSTACK_KAFKA_START_TIMEOUT", 240.0),
            mongo_start_timeout=_float_env(env, "DEVSTACK_MONGO_START_TIMEOUT", 60.0),
        )
        if cfg.kafka_port == cfg.kafka_controller_port:
            raise DevstackError(
                "DEVSTACK_KAFKA_PORT and DEVSTACK_KAFKA_CONTROLLER_PORT must differ"
            )
        return cfg

    # --- addresses ---------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def kafka_controller_address(self) -> str:
        return f"{self.host}:{self.kafka_controller_port}"

    @property
    def mongo_address(self) -> str:
        return f"{self.host}:{self.mongo_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://{self.host}:{self.mongo_port}/"

    # --- directories -------------------------------------------------------------
    @property
    def kafka_dir(self) -> Path:
        return self.devstack_dir / "kafka"

    @property
    def kafka_libs_dir(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def bin_dir(self) -> Path:
        return self.devstack_dir / "bin"

    @property
    def build_dir(self) -> Path:
        return self.devstack_dir / "build"

    @property
    def data_dir(self) -> Path:
        return self.devstack_dir / "data"

    @property
    def kafka_data_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def ferretdb_data_dir(self) -> Path:
        return self.data_dir / "ferretdb"

    @property
    def logs_dir(self) -> Path:
        return self.devstack_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.devstack_dir / "run"

    # --- files ---------------------------------------------------------------------
    @property
    def kafka_log_file(self) -> Path:
        return self.logs_dir / "kafka.log"

    @property
    def ferretdb_log_file(self) -> Path:
        return self.logs_dir / "ferretdb.log"

    @property
    def kafka_pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def ferretdb_pid_file(self) -> Path:
        return self.run_dir / "ferretdb.pid"

    @property
    def ferretdb_binary(self) -> Path:
        return self.bin_dir / "ferretdb-runner"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "devstack.lock"

"""The devstack orchestrator: Kafka + FerretDB as background processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import ferret, kafka, topics
from .config import DevstackConfig
from .errors import DevstackError
from .process import (
    cmdline,
    file_size,
    is_alive,
    matches,
    port_open,
    read_pid,
    remove_pid,
    rotate_log,
    spawn,
    stop,
    write_pid,
)

log = logging.getLogger(__name__)

Owner = Literal["devstack", "external"]


@dataclass(frozen=True)
class ComponentStatus:
    """State of one component as seen by :meth:`Devstack.status`."""

    name: str
    up: bool
    """The address answers the component's protocol (Kafka metadata / Mongo ping)."""
    address: str
    pid: int | None = None
    """Pid of the process this devstack started (None if not running or external)."""
    owner: Owner | None = None
    """``devstack`` if we started it, ``external`` if something else serves the port."""
    log_file: Path | None = None
    data_dir: Path | None = None
    detail: str = ""

    def describe(self) -> str:
        state = "up" if self.up else "down"
        parts = [f"{self.name:<9} {state:<5} {self.address}"]
        if self.pid is not None:
            parts.append(f"pid {self.pid}")
        if self.owner == "external":
            parts.append("external process (not started by devstack)")
        if self.log_file is not None and self.owner == "devstack":
            parts.append(f"log {self.log_file}")
        if self.detail:
            parts.append(self.detail)
        return "  ".join(parts)


@dataclass(frozen=True)
class StackStatus:
    """State of the whole stack; ``all_up`` is what ``devstack status`` exits on."""

    kafka: ComponentStatus
    ferretdb: ComponentStatus
    devstack_dir: Path
    topics: list[str] = field(default_factory=list)

    @property
    def components(self) -> dict[str, ComponentStatus]:
        return {"kafka": self.kafka, "ferretdb": self.ferretdb}

    @property
    def all_up(self) -> bool:
        return all(c.up for c in self.components.values())

    def __getitem__(self, name: str) -> ComponentStatus:
        return self.components[name]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(c).items()}
            for name, c in self.components.items()
        }
        out["all_up"] = self.all_up
        out["devstack_dir"] = str(self.devstack_dir)
        return out

    def describe(self) -> str:
        lines = [c.describe() for c in self.components.values()]
        lines.append(f"data dir  {self.devstack_dir / 'data'}")
        if self.topics:
            lines.append(f"topics    {len(self.topics)}: {', '.join(sorted(self.topics))}")
        return "\n".join(lines)


def _who(c: ComponentStatus) -> str:
    return f"pid {c.pid}" if c.pid is not None else (c.owner or "not running")


@dataclass(frozen=True)
class _Spec:
    name: str
    pid_file: Path
    log_file: Path
    data_dir: Path
    address: str
    host: str
    port: int
    identity: Callable[[list[str]], bool]
    probe: Callable[[], bool]
    protocol: str


class Devstack:
    """Start, inspect and stop the local Kafka + FerretDB stack.

    All methods are synchronous and safe to call from pytest fixtures, Make and the CLI.
    Concurrent ``up``/``down`` calls against the same ``devstack_dir`` serialise on a lock file.
    """

    def __init__(self, config: DevstackConfig | None = None) -> None:
        self.config = config or DevstackConfig.from_env()
        cfg = self.config
        self._kafka = _Spec(
            name="kafka",
            pid_file=cfg.kafka_pid_file,
            log_file=cfg.kafka_log_file,
            data_dir=cfg.kafka_data_dir,
            address=cfg.kafka_bootstrap,
            host=cfg.host,
            port=cfg.kafka_port,
            identity=lambda args: kafka.is_our_kafka(cfg, args),
            probe=lambda: kafka.probe(cfg.kafka_bootstrap),
            protocol="Kafka",
        )
        self._ferretdb = _Spec(
            name="ferretdb",
            pid_file=cfg.ferretdb_pid_file,
            log_file=cfg.ferretdb_log_file,
            data_dir=cfg.ferretdb_data_dir,
            address=cfg.mongo_address,
            host=cfg.host,
            port=cfg.mongo_port,
            identity=lambda args: ferret.is_our_ferretdb(cfg, args),
            probe=lambda: ferret.probe(cfg.mongodb_uri),
            protocol="MongoDB",
        )

    # --- public API --------------------------------------------------------------------

    def provision(self) -> None:
        """Download Kafka's jars and build the FerretDB runner if missing (no process started)."""
        self._make_dirs()
        with self._locked():
            kafka.provision(self.config)
            ferret.build(self.config)

    def up(self) -> StackStatus:
        """Provision, start what is not running, wait until both answer, create topics.

        Idempotent: a healthy stack is reused without restarts. Raises :class:`DevstackError`
        (with the tail of the relevant log) if a component cannot be started.
        """
        cfg = self.config
        started_at = time.monotonic()
        self._make_dirs()
        with self._locked():
            kafka_state = self._resolve(self._kafka)
            ferret_state = self._resolve(self._ferretdb)

            # Provision before starting anything so a missing tool fails fast.
            if kafka_state == "start":
                kafka.provision(cfg)
            if ferret_state == "start":
                ferret.build(cfg)

            waits: list[tuple[_Spec, int, int, bool]] = []
            if kafka_state == "start":
                self._check_port_free(cfg.host, cfg.kafka_controller_port, "Kafka controller")
                kafka.write_config_files(cfg)
                kafka.format_storage(cfg)
                pid, offset = self._start(self._kafka, kafka.start_command(cfg), cfg.kafka_dir)
                waits.append((self._kafka, pid, offset, True))
            elif kafka_state == "running":
                pid_k = read_pid(cfg.kafka_pid_file)
                assert pid_k is not None
                waits.append((self._kafka, pid_k, 0, False))
            if ferret_state == "start":
                pid, offset = self._start(
                    self._ferretdb, ferret.start_command(cfg), cfg.devstack_dir
                )
                waits.append((self._ferretdb, pid, offset, True))
            elif ferret_state == "running":
                pid_f = read_pid(cfg.ferretdb_pid_file)
                assert pid_f is not None
                waits.append((self._ferretdb, pid_f, 0, False))

            # FerretDB first: it is ready in well under a second, Kafka takes longer.
            try:
                for spec, pid, offset, fresh in sorted(
                    waits, key=lambda w: w[0].name != "ferretdb"
                ):
                    self._wait(spec, pid, offset, fresh)
            except DevstackError:
                # Leave nothing half-started behind: stop what this call started.
                for spec, pid, _, fresh in waits:
                    if fresh:
                        log.error(
                            "stopping %s (pid %d) started by this failed 'up'", spec.name, pid
                        )
                        with contextlib.suppress(DevstackError):
                            stop(pid, name=spec.name, timeout=15)
                        remove_pid(spec.pid_file)
                raise

            topics.create_topics(cfg.kafka_bootstrap, partitions=cfg.topic_partitions)
            status = self._status(with_topics=True)
        log.info(
            "devstack up in %.1fs: kafka %s (%s), ferretdb %s (%s); logs in %s",
            time.monotonic() - started_at,
            cfg.kafka_bootstrap,
            _who(status.kafka),
            cfg.mongo_address,
            _who(status.ferretdb),
            cfg.logs_dir,
        )
        return status

    def is_healthy(self) -> bool:
        """True if both Kafka and FerretDB answer on the configured addresses."""
        return self.status().all_up

    def status(self) -> StackStatus:
        """Which component is up, its pid (if we started it) and its address."""
        return self._status(with_topics=False)

    def down(self) -> StackStatus:
        """Stop exactly the processes ``up`` started (by pid file); remove their pid files."""
        self._make_dirs()
        with self._locked():
            for spec in (self._kafka, self._ferretdb):
                self._stop(spec)
            return self._status(with_topics=False)

    # --- internals ----------------------------------------------------------------------

    def _make_dirs(self) -> None:
        cfg = self.config
        for d in (cfg.devstack_dir, cfg.run_dir, cfg.logs_dir, cfg.data_dir, cfg.bin_dir):
            d.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self.config.lock_file.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another devstack command (lock %s)", self.config.lock_file)
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _managed_pid(self, spec: _Spec) -> int | None:
        """Pid from the pid file if that process is alive and is really ours."""
        pid = read_pid(spec.pid_file)
        if pid is None:
            return None
        if matches(pid, spec.identity):
            return pid
        return None

    def _resolve(self, spec: _Spec) -> Literal["running", "start", "external"]:
        pid = read_pid(spec.pid_file)
        if pid is not None:
            if matches(pid, spec.identity):
                log.info("%s already running (pid %d)", spec.name, pid)
                return "running"
            if is_alive(pid):
                log.warning(
                    "pid file %s names pid %d, which is now a different process (%s): ignoring it",
                    spec.pid_file,
                    pid,
                    " ".join(cmdline(pid))[:120] or "?",
                )
            else:
                log.warning("%s (pid %d) is not running any more: cleaning up", spec.name, pid)
            remove_pid(spec.pid_file)
        if port_open(spec.host, spec.port):
            if spec.probe():
                log.info(
                    "%s: %s is already served by a process devstack did not start; reusing it",
                    spec.name,
                    spec.address,
                )
                return "external"
            raise DevstackError(
                f"{spec.address} is already in use by a process that does not answer the "
                f"{spec.protocol} protocol; free the port or set another one "
                f"(see DEVSTACK_*_PORT)"
            )
        return "start"

    @staticmethod
    def _check_port_free(host: str, port: int, what: str) -> None:
        if port_open(host, port):
            raise DevstackError(
                f"{what} port {host}:{port} is already in use; free it or set "
                "DEVSTACK_KAFKA_CONTROLLER_PORT"
            )

    def _start(self, spec: _Spec, args: list[str], cwd: Path) -> tuple[int, int]:
        """Start ``args`` in the background; return its pid and the log offset it starts at."""
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        rotate_log(spec.log_file)
        offset = file_size(spec.log_file)
        pid = spawn(args, log_file=spec.log_file, cwd=cwd)
        write_pid(spec.pid_file, pid)
        log.info("started %s (pid %d), log %s", spec.name, pid, spec.log_file)
        return pid, offset

    def _wait(self, spec: _Spec, pid: int, offset: int, fresh: bool) -> None:
        log.info("waiting for %s on %s ...", spec.name, spec.address)
        t0 = time.monotonic()
        if spec.name == "kafka":
            kafka.wait_ready(self.config, pid, offset, require_marker=fresh)
        else:
            ferret.wait_ready(self.config, pid, offset)
        log.info("%s ready on %s (%.1fs)", spec.name, spec.address, time.monotonic() - t0)

    def _stop(self, spec: _Spec) -> None:
        pid = read_pid(spec.pid_file)
        if pid is None:
            if port_open(spec.host, spec.port):
                log.info(
                    "%s: no pid file; %s is served by something else: left alone",
                    spec.name,
                    spec.address,
                )
            else:
                log.info("%s: not running", spec.name)
            return
        if matches(pid, spec.identity):
            stop(pid, name=spec.name)
        elif is_alive(pid):
            log.warning(
                "%s: pid %d from %s is not ours any more: not signalling it",
                spec.name,
                pid,
                spec.pid_file,
            )
        else:
            log.info("%s: pid %d already gone", spec.name, pid)
        remove_pid(spec.pid_file)

    def _component_status(self, spec: _Spec) -> ComponentStatus:
        pid = self._managed_pid(spec)
        answering = port_open(spec.host, spec.port) and spec.probe()
        owner: Owner | None
        detail = ""
        if pid is not None:
            owner = "devstack"
            if not answering:
                detail = "process running but not answering (starting, or unhealthy: see log)"
        elif answering:
            owner = "external"
        else:
            owner = None
        return ComponentStatus(
            name=spec.name,
            up=answering,
            address=spec.address,
            pid=pid,
            owner=owner,
            log_file=spec.log_file,
            data_dir=spec.data_dir,
            detail=detail,
        )

    def _status(self, *, with_topics: bool) -> StackStatus:
        k = self._component_status(self._kafka)
        f = self._component_status(self._ferretdb)
        cfg = self.config
        names: list[str] = []
        if with_topics and k.up:
            names = [t for t in topics.list_topics(cfg.kafka_bootstrap) if not t.startswith("__")]
        return StackStatus(kafka=k, ferretdb=f, devstack_dir=cfg.devstack_dir, topics=names)

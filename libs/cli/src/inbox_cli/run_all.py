"""Run the whole backend locally: devstack (Kafka + FerretDB), the four service processes and the
console edge (HTTP, serves the web console; started last, it calls the four).

    inbox-run run        # foreground: start, wait until healthy, stream logs; Ctrl-C stops all
    inbox-run up         # background: same, with pid files + logs under .devstack/
    inbox-run status     # what runs where, and whether it answers gRPC health
    inbox-run down       # stop the services (by pid file), then the devstack

A services layer around ``inbox_devstack``: the devstack keeps owning Kafka and FerretDB.
Each service is ``python -m <svc>_service`` with its env prefix set (ports, Kafka, MongoDB,
the shared JWT secret). See ``inbox_cli.config`` for the environment overrides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from aiokafka.admin import AIOKafkaAdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inbox_devstack import Devstack, DevstackConfig, DevstackError
from inbox_devstack.process import (
    is_alive,
    matches,
    port_open,
    read_pid,
    remove_pid,
    spawn,
    stop,
    tail,
    write_pid,
)
from inbox_kit.auth import DEVELOPMENT_MODE_ENV, DEVELOPMENT_SECRET

from inbox_cli.config import HOST, RUNNABLE, SERVICES, ServiceSpec, jwt_secret

log = logging.getLogger("inbox-run")

HEALTH_TIMEOUT = float(os.environ.get("INBOX_RUN_HEALTH_TIMEOUT", "120"))
STOP_TIMEOUT = 20.0
COLORS = {"presence": "36", "routing": "35", "contacts": "33", "replies": "32", "console": "34"}


# --- configuration of one service process -------------------------------------------------


def service_env(
    spec: ServiceSpec,
    cfg: DevstackConfig,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of one service process.

    ``INBOX_RUN_ISOLATION=<suffix>`` gives this stack its own databases and consumer groups
    (reading from the latest offsets), so it can run beside another stack on the same broker
    (the stack-level e2e test uses it).
    """
    env = dict(os.environ if base is None else base)
    p = spec.prefix
    if spec.protocol == "http":
        return console_env(spec, env)
    env[f"{p}KAFKA_BOOTSTRAP_SERVERS"] = env.get("INBOX_KAFKA_BOOTSTRAP") or cfg.kafka_bootstrap
    env[f"{p}MONGODB_URI"] = env.get("INBOX_MONGODB_URI") or cfg.mongodb_uri
    env[f"{p}GRPC_HOST"] = HOST
    env[f"{p}GRPC_PORT"] = str(spec.grpc_port(env))
    env[f"{p}METRICS_PORT"] = str(spec.metrics_port(env))
    env[f"{p}JWT_SECRET"] = jwt_secret(env)
    if env[f"{p}JWT_SECRET"] == DEVELOPMENT_SECRET:
        env.setdefault(DEVELOPMENT_MODE_ENV, "1")  # a local stack; services refuse it otherwise
    if spec.name == "replies":
        contacts = next(s for s in SERVICES if s.name == "contacts")
        env["REPLIES_CONTACTS_ADDRESS"] = contacts.address(env)
    suffix = env.get("INBOX_RUN_ISOLATION", "").strip()
    if suffix:
        env[f"{p}MONGODB_DATABASE"] = f"inbox_{spec.name}_{suffix}"
        for setting, default in spec.consumer_groups.items():
            env[f"{p}{setting}"] = f"{default}-{suffix}"
        # New groups start at the end (the services name this setting differently).
        env[f"{p}CONSUMER_OFFSET_RESET"] = "latest"
        env[f"{p}INITIAL_OFFSET"] = "latest"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def console_env(spec: ServiceSpec, env: dict[str, str]) -> dict[str, str]:
    """The console edge: where the four services listen; development mode (dev login) on
    unless ``CONSOLE_DEV_MODE`` says otherwise — ``inbox-run`` is a development tool."""
    p = spec.prefix
    env[f"{p}HTTP_HOST"] = HOST
    env[f"{p}HTTP_PORT"] = str(spec.grpc_port(env))
    env[f"{p}JWT_SECRET"] = jwt_secret(env)
    env.setdefault(f"{p}DEV_MODE", "true")
    for service in SERVICES:
        env[f"{p}{service.name.upper()}_ADDRESS"] = service.address(env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def consumer_groups(spec: ServiceSpec, env: Mapping[str, str]) -> list[str]:
    return [
        env.get(f"{spec.prefix}{setting}") or default
        for setting, default in spec.consumer_groups.items()
    ]


def selected() -> tuple[ServiceSpec, ...]:
    """``INBOX_RUN_SERVICES=contacts,replies`` runs a subset (default: all four and the console)."""
    raw = os.environ.get("INBOX_RUN_SERVICES", "").strip()
    if not raw:
        return RUNNABLE
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = names - {s.name for s in RUNNABLE}
    if unknown:
        raise StartupFailed(f"INBOX_RUN_SERVICES: unknown service(s) {sorted(unknown)}")
    return tuple(s for s in RUNNABLE if s.name in names)


def command(spec: ServiceSpec) -> list[str]:
    return [sys.executable, "-m", spec.module]


def is_our_service(spec: ServiceSpec) -> Callable[[list[str]], bool]:
    def check(args: list[str]) -> bool:
        return "-m" in args and spec.module in args

    return check


# --- health ---------------------------------------------------------------------------------


def http_health(address: str, timeout: float = 1.0) -> str:
    """The console edge's liveness (``GET /healthz``), in gRPC health's words."""

    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=timeout) as reply:
            return "SERVING" if reply.status == 200 else "NOT_SERVING"
    except (urllib.error.URLError, OSError):
        return "UNREACHABLE"


def spec_health(spec: ServiceSpec, address: str, timeout: float = 1.0) -> str:
    return (http_health if spec.protocol == "http" else health)(address, timeout)


def health(address: str, timeout: float = 1.0) -> str:
    """``SERVING``, ``NOT_SERVING``, ``UNKNOWN`` or ``UNREACHABLE``."""
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
    except grpc.RpcError:
        return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def _group_ready(bootstrap: str, group: str) -> bool:
    """The consumer group is Stable and every member has partitions."""

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        described: Any = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in described:
        for entry in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members, [authorized_ops])
            state, members = entry[2], entry[5]
            if state == "Stable" and members and all(len(m[-1]) > 0 for m in members):
                return True
    return False


def group_ready(bootstrap: str, group: str) -> bool:
    try:
        return asyncio.run(_group_ready(bootstrap, group))
    except Exception:  # broker hiccup while starting: not ready yet
        return False


@dataclass
class Running:
    spec: ServiceSpec
    pid: int
    env: dict[str, str]
    log_file: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.env[f'{self.spec.prefix}{self.spec.port_setting}']}"

    @property
    def kafka(self) -> str:
        return self.env.get(f"{self.spec.prefix}KAFKA_BOOTSTRAP_SERVERS", "-")

    @property
    def mongodb(self) -> str:
        return self.env.get(f"{self.spec.prefix}MONGODB_URI", "-")

    @property
    def metrics(self) -> str:
        port = self.env.get(f"{self.spec.prefix}METRICS_PORT")
        return f"http://{HOST}:{port}/metrics" if port else "-"

    @property
    def url(self) -> str | None:
        """The browser URL (the console edge only)."""
        return f"http://{self.address}/" if self.spec.protocol == "http" else None


class StartupFailed(RuntimeError):
    pass


def wait_healthy(
    running: Sequence[Running],
    bootstrap: str,
    timeout: float = HEALTH_TIMEOUT,
    alive: Callable[[Running], bool] | None = None,
) -> dict[str, float]:
    """Block until every service answers SERVING and its consumer group has partitions.

    Returns seconds to healthy per service; raises :class:`StartupFailed` if a process exits
    or the deadline passes.
    """
    alive = alive or (lambda r: is_alive(r.pid))
    started = time.monotonic()
    deadline = started + timeout
    ready: dict[str, float] = {}
    while len(ready) < len(running):
        for r in running:
            if r.spec.name in ready:
                continue
            if not alive(r):
                raise StartupFailed(
                    f"{r.spec.name} (pid {r.pid}) exited during start-up; last log lines:\n"
                    + tail(r.log_file, 25)
                )
            if spec_health(r.spec, r.address, timeout=1.0) != "SERVING":
                continue
            if not all(group_ready(bootstrap, g) for g in consumer_groups(r.spec, r.env)):
                continue
            ready[r.spec.name] = time.monotonic() - started
            log.info("%s healthy after %.1fs", r.spec.name, ready[r.spec.name])
        if len(ready) == len(running):
            break
        if time.monotonic() > deadline:
            missing = [r.spec.name for r in running if r.spec.name not in ready]
            raise StartupFailed(f"not healthy after {timeout:.0f}s: {', '.join(missing)}")
        time.sleep(0.25)
    return ready


def check_ports_free(env_for: Callable[[ServiceSpec], Mapping[str, str]]) -> None:
    busy = []
    for spec in selected():
        env = env_for(spec)
        for key in (spec.port_setting, "METRICS_PORT"):
            if f"{spec.prefix}{key}" not in env:
                continue
            port = int(env[f"{spec.prefix}{key}"])
            if port_open(HOST, port, timeout=0.2):
                busy.append(f"{spec.name} {key.lower()} {HOST}:{port}")
    if busy:
        raise StartupFailed(
            "ports already in use (another `make run`/`make up`? try `make status`): "
            + "; ".join(busy)
        )


# --- pid files (background mode) -----------------------------------------------------------


def pid_file(cfg: DevstackConfig, spec: ServiceSpec) -> Path:
    return cfg.run_dir / f"{spec.name}.pid"


def env_file(cfg: DevstackConfig, spec: ServiceSpec) -> Path:
    return cfg.run_dir / f"{spec.name}.env.json"


def saved_env(cfg: DevstackConfig, spec: ServiceSpec) -> dict[str, str]:
    """The configuration ``up`` started a background service with (secrets left out)."""
    try:
        data: dict[str, str] = json.loads(env_file(cfg, spec).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data


def log_file(cfg: DevstackConfig, spec: ServiceSpec) -> Path:
    return cfg.logs_dir / f"{spec.name}.log"


def managed_pid(cfg: DevstackConfig, spec: ServiceSpec) -> int | None:
    pid = read_pid(pid_file(cfg, spec))
    if pid is not None and matches(pid, is_our_service(spec)):
        return pid
    return None


# --- output ---------------------------------------------------------------------------------


def describe(running: Sequence[Running], cfg: DevstackConfig, timings: Mapping[str, float]) -> str:
    lines = [f"{'service':<9} {'pid':>7}  {'address':<16} {'metrics':<32} {'healthy in':>10}  log"]
    for r in running:
        took = timings.get(r.spec.name)
        lines.append(
            f"{r.spec.name:<9} {r.pid:>7}  {r.address:<16} {r.metrics:<32} "
            f"{(f'{took:.1f}s' if took is not None else '-'):>10}  {r.log_file}"
        )
    lines.append(f"kafka     {running[0].kafka if running else cfg.kafka_bootstrap}")
    lines.append(f"mongodb   {running[0].mongodb if running else cfg.mongodb_uri}")
    for r in running:
        if r.url:
            dev = r.env.get(f"{r.spec.prefix}DEV_MODE", "").lower() in {"1", "true", "yes", "on"}
            lines.append(f"console   {r.url}" + ("   (development login on)" if dev else ""))
    lines.append("try:      uv run inboxctl --help   |   make demo")
    return "\n".join(lines)


def _pretty(line: str) -> str:
    """One JSON log record → ``LEVEL logger: message key=value``; other lines unchanged."""
    text = line.rstrip("\n")
    if not text.startswith("{"):
        return text
    try:
        rec = json.loads(text)
    except ValueError:
        return text
    if not isinstance(rec, dict):
        return text
    level = str(rec.pop("level", "")).ljust(7)
    logger = rec.pop("logger", "")
    message = rec.pop("message", "")
    for key in ("ts", "service", "taskName"):
        rec.pop(key, None)
    extras = " ".join(f"{k}={v}" for k, v in rec.items() if k != "exc_info")
    out = f"{level} {logger}: {message}" + (f"  {extras}" if extras else "")
    if "exc_info" in rec:
        out += "\n" + str(rec["exc_info"])
    return out


def _pump(name: str, stream: IO[bytes], log_path: Path, color: bool, lock: threading.Lock) -> None:
    label = f"{name:<8}|"
    if color:
        label = f"\033[{COLORS.get(name, '0')}m{label}\033[0m"
    with log_path.open("ab") as out:
        for raw in iter(stream.readline, b""):
            out.write(raw)
            out.flush()
            text = _pretty(raw.decode(errors="replace"))
            with lock:
                for piece in text.splitlines() or [""]:
                    sys.stdout.write(f"{label} {piece}\n")
                sys.stdout.flush()


# --- commands -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if ``inbox-run run`` dies (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _ensure_devstack(stack: Devstack) -> bool:
    """Bring the devstack up; True if this call started it."""
    if stack.is_healthy():
        return False
    print("starting Kafka + FerretDB (devstack; the first run downloads and builds them) ...")
    stack.up()
    return True


def cmd_run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    cfg = DevstackConfig.from_env()
    stack = Devstack(cfg)
    for spec in selected():
        if managed_pid(cfg, spec) is not None:
            print(f"{spec.name} is already running in the background (`make down` stops it)")
            return 1
    check_ports_free(lambda s: service_env(s, cfg))
    started_stack = _ensure_devstack(stack)
    infra_s = time.monotonic() - t0
    procs: dict[str, subprocess.Popen[bytes]] = {}
    running: list[Running] = []
    lock = threading.Lock()
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    stop_event = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_event.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        cfg.logs_dir.mkdir(parents=True, exist_ok=True)
        for spec in selected():
            env = service_env(spec, cfg)
            path = log_file(cfg, spec)
            # Own session: a terminal Ctrl-C reaches only us; we stop the children in order.
            proc = subprocess.Popen(
                command(spec),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            procs[spec.name] = proc
            # Pid files too: should this process be SIGKILLed, `make down` still finds them.
            write_pid(pid_file(cfg, spec), proc.pid)
            assert proc.stdout is not None
            threading.Thread(
                target=_pump, args=(spec.name, proc.stdout, path, color, lock), daemon=True
            ).start()
            running.append(Running(spec, proc.pid, env, path))
        try:
            timings = wait_healthy(
                running,
                running[0].kafka,
                alive=lambda r: procs[r.spec.name].poll() is None and not stop_event.is_set(),
            )
        except StartupFailed as exc:
            if stop_event.is_set():
                return 130
            print(f"inbox-run: {exc}", file=sys.stderr)
            return 1
        total = time.monotonic() - t0
        with lock:
            print("\n" + describe(running, cfg, timings))
            print(
                f"all healthy {total:.1f}s after start (infrastructure {infra_s:.1f}s, "
                f"services {max(timings.values()):.1f}s); Ctrl-C stops everything\n",
                flush=True,
            )
        if args.ready_file:
            Path(args.ready_file).write_text(
                json.dumps({"seconds": total, "infra_seconds": infra_s, "services": timings})
            )
        while not stop_event.wait(0.5):
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                print(f"inbox-run: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
                exit_code = 1
                break
        return exit_code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for name, proc in reversed(list(procs.items())):
            if proc.poll() is None:
                with contextlib.suppress(DevstackError):
                    stop(proc.pid, name=name, timeout=STOP_TIMEOUT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for spec in selected():
            if spec.name in procs:
                remove_pid(pid_file(cfg, spec))
        if procs:
            print("services stopped: " + ", ".join(procs))
        if started_stack and not args.keep_infra:
            stack.down()
            print("devstack stopped (it was started by this run; --keep-infra keeps it)")


def cmd_up(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    cfg = DevstackConfig.from_env()
    stack = Devstack(cfg)
    _ensure_devstack(stack)
    infra_s = time.monotonic() - t0
    running: list[Running] = []
    busy = [
        f"{s.name} {HOST}:{s.grpc_port()}"
        for s in selected()
        if managed_pid(cfg, s) is None and port_open(HOST, s.grpc_port(), timeout=0.2)
    ]
    if busy:
        print(f"inbox-run: ports already in use: {'; '.join(busy)}", file=sys.stderr)
        return 1
    for spec in selected():
        pid = managed_pid(cfg, spec)
        if pid is not None:
            env = saved_env(cfg, spec) or service_env(spec, cfg)
            running.append(Running(spec, pid, env, log_file(cfg, spec)))
            continue
        env = service_env(spec, cfg)
        pid = spawn(command(spec), log_file=log_file(cfg, spec), cwd=Path.cwd(), env=env)
        write_pid(pid_file(cfg, spec), pid)
        keep = {k: v for k, v in env.items() if k.startswith(spec.prefix) and "SECRET" not in k}
        env_file(cfg, spec).write_text(json.dumps(keep))
        running.append(Running(spec, pid, env, log_file(cfg, spec)))
    try:
        timings = wait_healthy(running, running[0].kafka)
    except StartupFailed as exc:
        print(f"inbox-run: {exc}\n(`make down` stops what was started)", file=sys.stderr)
        return 1
    print(describe(running, cfg, timings))
    print(f"all healthy {time.monotonic() - t0:.1f}s after start (infrastructure {infra_s:.1f}s)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cfg = DevstackConfig.from_env()
    for spec in reversed(RUNNABLE):
        pid = read_pid(pid_file(cfg, spec))
        if pid is None:
            continue
        if matches(pid, is_our_service(spec)):
            stop(pid, name=spec.name, timeout=STOP_TIMEOUT)
            print(f"{spec.name:<9} stopped (pid {pid})")
        remove_pid(pid_file(cfg, spec))
        with contextlib.suppress(FileNotFoundError):
            env_file(cfg, spec).unlink()
    if not args.services_only:
        status = Devstack(cfg).down()
        print(status.describe())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cfg = DevstackConfig.from_env()
    rows = []
    for spec in RUNNABLE:
        pid = managed_pid(cfg, spec)
        env = saved_env(cfg, spec) if pid else {}
        address = (
            env.get(f"{spec.prefix}{spec.host_setting}", HOST)
            + ":"
            + str(env.get(f"{spec.prefix}{spec.port_setting}", spec.grpc_port()))
        )
        rows.append(
            {
                "service": spec.name,
                "pid": pid,
                "address": address,
                "health": spec_health(spec, address, timeout=1.0),
                "log": str(log_file(cfg, spec)),
            }
        )
    infra = Devstack(cfg).status()
    if args.json:
        print(json.dumps({"services": rows, "infrastructure": infra.as_dict()}, indent=2))
    else:
        for row in rows:
            shown = row["pid"] if row["pid"] is not None else "-"
            print(
                f"{row['service']:<9} {row['health']:<11} {row['address']:<16} pid {shown}"
                f"  log {row['log']}"
            )
        print(infra.describe())
    healthy = all(r["health"] == "SERVING" for r in rows) and infra.all_up
    return 0 if healthy else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="inbox-run",
        description="Run Kafka + FerretDB (devstack), the four inbox services and the console "
        "edge locally.",
        epilog="Ports: presence 7061, routing 7062, contacts 7063, replies 7064 (metrics "
        "9461-9464), console http://127.0.0.1:8080/; override with <PREFIX>GRPC_PORT / "
        "<PREFIX>METRICS_PORT / CONSOLE_HTTP_PORT or INBOX_PORT_OFFSET. INBOX_JWT_SECRET sets the "
        "shared token secret.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="foreground: start all, wait healthy, stream logs")
    run.add_argument(
        "--keep-infra", action="store_true", help="leave Kafka/FerretDB running on exit"
    )
    run.add_argument("--ready-file", help="write start-up timings (JSON) here once healthy")
    sub.add_parser("up", help="background: start what is not running, wait until healthy")
    down = sub.add_parser("down", help="stop the background services, then the devstack")
    down.add_argument("--services-only", action="store_true", help="leave the devstack up")
    status = sub.add_parser("status", help="what runs where; exit 0 only if all healthy")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="inbox-run: %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
    }
    try:
        return commands[args.command](args)
    except (DevstackError, StartupFailed) as exc:
        print(f"inbox-run: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""FerretDB v1 (SQLite backend) as a MongoDB-wire database, built from our Go source."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from pathlib import Path

from .config import DevstackConfig
from .errors import DevstackError
from .process import is_alive, require_tool, tail

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent / "ferretdb"
SOURCE_FILES = ("main.go", "go.mod", "go.sum")
BINARY_NAME = "ferretdb-runner"


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCE_FILES:
        digest.update(name.encode() + b"\0")
        digest.update((SOURCE_DIR / name).read_bytes())
    return digest.hexdigest()


def _hash_file(cfg: DevstackConfig) -> Path:
    return cfg.ferretdb_binary.with_name(BINARY_NAME + ".sha256")


def is_built(cfg: DevstackConfig) -> bool:
    if not cfg.ferretdb_binary.is_file():
        return False
    try:
        return _hash_file(cfg).read_text().strip() == source_hash()
    except FileNotFoundError:
        return False


def build(cfg: DevstackConfig) -> bool:
    """Build ``<devstack_dir>/bin/ferretdb-runner`` if missing or stale. False if up to date."""
    if is_built(cfg):
        log.debug("ferretdb-runner is up to date at %s", cfg.ferretdb_binary)
        return False
    go = require_tool("go", "build the FerretDB runner")
    cfg.bin_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.ferretdb_binary.with_name(BINARY_NAME + ".partial")
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    # -mod=readonly: go.sum is committed; -buildvcs=false: the source sits in a git checkout.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly -buildvcs=false").strip()
    log.info("building %s from %s (first build downloads Go modules)", BINARY_NAME, SOURCE_DIR)
    started = time.monotonic()
    proc = subprocess.run(
        [go, "build", "-trimpath", "-o", str(tmp), "."],
        cwd=SOURCE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        raise DevstackError(
            f"go build of {BINARY_NAME} failed (exit {proc.returncode}):\n"
            + "\n".join(output[-30:])
        )
    tmp.replace(cfg.ferretdb_binary)
    _hash_file(cfg).write_text(source_hash() + "\n")
    log.info("built %s in %.1fs", cfg.ferretdb_binary, time.monotonic() - started)
    return True


def start_command(cfg: DevstackConfig) -> list[str]:
    return [
        str(cfg.ferretdb_binary),
        "-listen-addr",
        cfg.mongo_address,
        "-data-dir",
        str(cfg.ferretdb_data_dir),
        "-log-level",
        os.environ.get("DEVSTACK_FERRETDB_LOG_LEVEL", "error"),
    ]


def is_our_ferretdb(cfg: DevstackConfig, args: list[str]) -> bool:
    """Identity check for a pid: our ferretdb-runner serving this devstack's data dir."""
    return bool(args) and Path(args[0]).name == BINARY_NAME and str(cfg.ferretdb_data_dir) in args


def probe(uri: str, timeout: float = 2.0) -> bool:
    """True if a MongoDB-wire server at ``uri`` answers ``ping``."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    timeout_ms = int(timeout * 1000)
    client: MongoClient[dict[str, object]] = MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        directConnection=True,
    )
    try:
        reply = client.admin.command("ping")
        return bool(reply.get("ok"))
    except PyMongoError as exc:
        log.debug("mongo probe of %s failed: %r", uri, exc)
        return False
    finally:
        client.close()


def wait_ready(cfg: DevstackConfig, pid: int, log_offset: int) -> None:
    deadline = time.monotonic() + cfg.mongo_start_timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise DevstackError(
                f"FerretDB (pid {pid}) exited during start-up; "
                f"last lines of {cfg.ferretdb_log_file}:\n"
                + tail(cfg.ferretdb_log_file, 40, since=log_offset)
            )
        if probe(cfg.mongodb_uri, timeout=1.0):
            return
        time.sleep(0.3)
    raise DevstackError(
        f"FerretDB did not answer ping within {cfg.mongo_start_timeout:.0f}s (pid {pid}); "
        f"last lines of {cfg.ferretdb_log_file}:\n"
        + tail(cfg.ferretdb_log_file, 40, since=log_offset)
    )

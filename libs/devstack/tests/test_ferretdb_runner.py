"""The devstack's FerretDB runner: query logs formatted only when written, GC defaults,
commits that survive a kill -9.

``inbox_devstack.ferret.PATCHES`` gives FerretDB's SQL layer a logger that drops records
unformatted unless the server logs at debug level (unpatched, every statement formatted its
arguments, whole documents, before the level check dropped the record); the runner
(``ferretdb/main.go``) sets a larger GC target with a memory limit unless ``GOGC`` /
``GOMEMLIMIT`` say otherwise, and runs SQLite with ``synchronous=NORMAL`` (commits written,
not fsynced). These tests run the devstack's own runner binary on a private port and data
directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from inbox_devstack import DevstackConfig, ferret
from inbox_testing import free_port
from pymongo import MongoClient
from pymongo.collection import Collection

pytestmark = [pytest.mark.infra, pytest.mark.timeout(120)]


def _runner() -> Path:
    cfg = DevstackConfig.from_env()
    if not ferret.is_built(cfg):
        pytest.skip(f"no up-to-date devstack FerretDB runner at {cfg.ferretdb_binary}")
    return cfg.ferretdb_binary


@contextmanager
def _serving(
    data_dir: Path, level: str, env: dict[str, str] | None = None, *, kill: bool = False
) -> Iterator[tuple[Collection[dict[str, Any]], Path]]:
    """The runner on ``data_dir`` at log ``level``: a collection of it and the log's path.
    Stopped by SIGTERM (must exit 0), or by SIGKILL if ``kill``."""
    port = free_port()
    log_path = data_dir.with_suffix(".log")
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [
                str(_runner()),
                "-listen-addr",
                f"127.0.0.1:{port}",
                "-data-dir",
                str(data_dir),
                "-log-level",
                level,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=20_000
        )
        with client:
            yield client["runner"]["docs"], log_path
    finally:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == (-signal.SIGKILL if kill else 0), log_path.read_text()[-2000:]


def _insert_and_stop(
    data_dir: Path, level: str, marker: str, env: dict[str, str] | None = None
) -> str:
    """Insert (and read back) a document holding ``marker``; return the runner's log."""
    with _serving(data_dir, level, env) as (coll, log_path):
        coll.insert_one({"_id": "doc", "marker": marker})
        assert coll.find_one({"_id": "doc"}) == {"_id": "doc", "marker": marker}
    return log_path.read_text()


def test_statements_are_logged_at_debug_level_and_only_then(tmp_path: Path) -> None:
    marker = f"marker-{uuid.uuid4().hex}"

    debug_log = _insert_and_stop(tmp_path / "debug", "debug", marker)
    logged = [line for line in debug_log.splitlines() if marker in line]
    assert any(">>> INSERT" in line for line in logged), debug_log[-4000:]

    quiet_log = _insert_and_stop(tmp_path / "info", "info", marker)
    assert "ferretdb-runner listening" in quiet_log
    assert marker not in quiet_log


def test_gc_defaults_apply_unless_the_environment_sets_them(tmp_path: Path) -> None:
    unset = {"GOGC": "", "GOMEMLIMIT": ""}
    default_log = _insert_and_stop(tmp_path / "default", "warn", "m", env=unset)
    assert "gogc=1000 gomemlimit=1073741824" in default_log, default_log[-2000:]

    chosen = {"GOGC": "150", "GOMEMLIMIT": "256MiB"}
    chosen_log = _insert_and_stop(tmp_path / "chosen", "warn", "m", env=chosen)
    assert "gogc=150 gomemlimit=268435456" in chosen_log, chosen_log[-2000:]


def test_acknowledged_writes_survive_a_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _serving(data_dir, "warn", kill=True) as (coll, _):
        for n in range(200):  # one commit each
            coll.insert_one({"_id": f"d{n}", "n": n})
        coll.update_one({"_id": "d7"}, {"$set": {"n": -7}})
        coll.delete_one({"_id": "d9"})
    with _serving(data_dir, "warn") as (coll, _):
        found = {d["_id"]: d["n"] for d in coll.find({})}
    expected = {f"d{n}": n for n in range(200) if n != 9} | {"d7": -7}
    assert found == expected

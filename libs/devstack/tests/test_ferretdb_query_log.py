"""The devstack's FerretDB formats query logs only when it writes them.

``inbox_devstack.ferret.PATCHES`` gives FerretDB's SQL layer a logger that drops records
unformatted unless the server logs at debug level (unpatched, every statement formatted its
arguments, whole documents, before the level check dropped the record). This test runs the
devstack's own runner binary on a private port and data directory twice: at debug level every
statement is still logged with its arguments, at the devstack's level none is.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from inbox_devstack import DevstackConfig, ferret
from pymongo import MongoClient

pytestmark = [pytest.mark.infra, pytest.mark.timeout(120)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _insert_and_stop(binary: Path, data_dir: Path, level: str, marker: str) -> str:
    """Run the runner at ``level``, insert a document holding ``marker``; return its log."""
    port = _free_port()
    log_path = data_dir.with_suffix(".log")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                str(binary),
                "-listen-addr",
                f"127.0.0.1:{port}",
                "-data-dir",
                str(data_dir),
                "-log-level",
                level,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=20_000
        )
        with client:
            coll = client["querylog"]["docs"]
            coll.insert_one({"_id": "doc", "marker": marker})
            assert coll.find_one({"_id": "doc"}) == {"_id": "doc", "marker": marker}
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-2000:]
    return log_path.read_text()


def test_statements_are_logged_at_debug_level_and_only_then(tmp_path: Path) -> None:
    cfg = DevstackConfig.from_env()
    if not ferret.is_built(cfg):
        pytest.skip(f"no up-to-date devstack FerretDB runner at {cfg.ferretdb_binary}")
    marker = f"marker-{uuid.uuid4().hex}"

    debug_log = _insert_and_stop(cfg.ferretdb_binary, tmp_path / "debug", "debug", marker)
    logged = [line for line in debug_log.splitlines() if marker in line]
    assert any(">>> INSERT" in line for line in logged), debug_log[-4000:]

    quiet_log = _insert_and_stop(cfg.ferretdb_binary, tmp_path / "info", "info", marker)
    assert "ferretdb-runner listening" in quiet_log
    assert marker not in quiet_log

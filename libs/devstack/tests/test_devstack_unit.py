"""Fast tests of the devstack: no Kafka/FerretDB is started."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from inbox_devstack import (
    Devstack,
    DevstackConfig,
    DevstackError,
    MissingToolError,
    ferret,
    find_repo_root,
    kafka,
    topic_names,
)
from inbox_testing import free_port


@pytest.fixture
def cfg(tmp_path: Path) -> DevstackConfig:
    ports = {free_port() for _ in range(3)}
    while len(ports) < 3:
        ports.add(free_port())
    k, c, m = sorted(ports)
    return DevstackConfig.from_env(
        {
            "DEVSTACK_DIR": str(tmp_path / "stack"),
            "DEVSTACK_KAFKA_PORT": str(k),
            "DEVSTACK_KAFKA_CONTROLLER_PORT": str(c),
            "DEVSTACK_MONGO_PORT": str(m),
        }
    )


def test_config_defaults() -> None:
    cfg = DevstackConfig.from_env({})
    assert cfg.kafka_bootstrap == "127.0.0.1:9092"
    assert cfg.mongodb_uri == "mongodb://127.0.0.1:27017/"
    assert cfg.kafka_controller_port == 9093
    assert cfg.topic_partitions == 6
    assert cfg.devstack_dir == find_repo_root() / ".devstack"
    assert (find_repo_root() / "uv.lock").is_file()


def test_config_overrides(tmp_path: Path) -> None:
    cfg = DevstackConfig.from_env(
        {
            "DEVSTACK_DIR": str(tmp_path),
            "DEVSTACK_KAFKA_PORT": "19092",
            "DEVSTACK_KAFKA_CONTROLLER_PORT": "19093",
            "DEVSTACK_MONGO_PORT": "27117",
            "DEVSTACK_TOPIC_PARTITIONS": "3",
        }
    )
    assert cfg.kafka_bootstrap == "127.0.0.1:19092"
    assert cfg.mongodb_uri == "mongodb://127.0.0.1:27117/"
    assert cfg.topic_partitions == 3
    assert cfg.kafka_pid_file == tmp_path.resolve() / "run" / "kafka.pid"
    with pytest.raises(DevstackError, match="DEVSTACK_MONGO_PORT"):
        DevstackConfig.from_env({"DEVSTACK_MONGO_PORT": "nope"})


def test_server_properties_are_loopback_single_node(cfg: DevstackConfig) -> None:
    props = dict(
        line.split("=", 1)
        for line in kafka.server_properties(cfg).splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == cfg.kafka_controller_address
    assert "controller.quorum.voters" not in props
    assert props["listeners"] == (
        f"PLAINTEXT://127.0.0.1:{cfg.kafka_port},CONTROLLER://127.0.0.1:{cfg.kafka_controller_port}"
    )
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    assert props["log.dirs"] == str(cfg.kafka_data_dir)


def test_cluster_id_generated_once(cfg: DevstackConfig) -> None:
    cid = kafka.cluster_id(cfg)
    assert len(cid) == 22 and not cid.startswith("-")
    assert kafka.cluster_id(cfg) == cid


def test_topic_names_include_dead_letters_and_repartition_topics() -> None:
    names = topic_names()
    assert "inbox.presence.v1" in names and "inbox.presence.v1.dlq" in names
    assert "inbox.messages.v1.repartition" in names
    assert "inbox.contacts.v1.repartition" in names
    # the change feed is read by every replica and has no dead-letter topic
    assert "inbox.contacts.changes.v1.dlq" not in names
    sources = [n for n in names if not n.endswith((".dlq", ".repartition"))]
    assert all(f"{n}.dlq" in names for n in sources if n != "inbox.contacts.changes.v1")


def test_missing_tools_are_named(
    cfg: DevstackConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    stack = Devstack(cfg)
    with pytest.raises(MissingToolError, match="'mvn'") as exc:
        stack.up()
    assert exc.value.tool == "mvn"
    # With Kafka's jars in place, the next missing tool is go (for the FerretDB runner).
    cfg.kafka_libs_dir.mkdir(parents=True)
    (cfg.kafka_libs_dir / ".devstack-provisioned").write_text(kafka._pom_digest())
    with pytest.raises(MissingToolError, match="'go'"):
        stack.provision()
    assert not cfg.kafka_pid_file.exists() and not cfg.ferretdb_pid_file.exists()


def test_status_of_nothing(cfg: DevstackConfig) -> None:
    status = Devstack(cfg).status()
    assert not status.all_up
    assert status.kafka.pid is None and status.kafka.owner is None
    assert not Devstack(cfg).is_healthy()


@pytest.fixture
def foreign_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_down_never_kills_a_recycled_pid(
    cfg: DevstackConfig, foreign_process: subprocess.Popen[bytes]
) -> None:
    cfg.run_dir.mkdir(parents=True)
    cfg.kafka_pid_file.write_text(f"{foreign_process.pid}\n")
    cfg.ferretdb_pid_file.write_text("999999999\n")  # dead pid
    Devstack(cfg).down()
    assert foreign_process.poll() is None, "down() signalled a process it did not start"
    assert not cfg.kafka_pid_file.exists() and not cfg.ferretdb_pid_file.exists()


def test_port_taken_by_non_kafka_fails_clearly(cfg: DevstackConfig) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", cfg.kafka_port))
    server.listen()
    stop = threading.Event()

    def accept_and_close() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=accept_and_close, daemon=True)
    t.start()
    try:
        started = time.monotonic()
        with pytest.raises(DevstackError, match=f"127.0.0.1:{cfg.kafka_port}.*Kafka"):
            Devstack(cfg).up()
        assert time.monotonic() - started < 30
    finally:
        stop.set()
        t.join()
        server.close()
    assert not cfg.kafka_pid_file.exists()


def test_ferretdb_source_is_package_data() -> None:
    for name in ferret.SOURCE_FILES:
        assert (ferret.SOURCE_DIR / name).is_file(), name
    assert len(ferret.source_hash()) == 64
    assert os.access(ferret.SOURCE_DIR / "main.go", os.R_OK)
    assert ferret.ferretdb_version() == "v1.24.2"


def _fake_module(root: Path) -> Path:
    """Just the files the FerretDB patches touch or check, read-only like the module cache."""
    for patch in ferret.PATCHES:
        for rel, text in ((patch.path, "\t" + patch.old), *patch.requires):
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and text in path.read_text():
                continue  # a later patch anchored on text an earlier one puts back
            with path.open("a") as fh:
                fh.write(text + "\n")
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    return root


def test_ferretdb_patch_applies_once_and_fails_loudly(tmp_path: Path) -> None:
    module = _fake_module(tmp_path / "mod")
    ferret._make_writable(module)
    ferret.apply_patches(module)
    metadata_go = (module / ferret.PATCHES[0].path).read_text()
    assert 'IDColumn = DefaultColumn + "->\\"_id\\""' in metadata_go
    assert "'$._id'" not in metadata_go
    # Applying again: the target text is gone -> a clear error, not a silent no-op.
    with pytest.raises(DevstackError, match="occurs 0 times"):
        ferret.apply_patches(module)

    # A precondition (how registry.go builds the index expression) no longer holds.
    other = _fake_module(tmp_path / "other")
    ferret._make_writable(other)
    registry = other / "internal/backends/sqlite/metadata/registry.go"
    registry.write_text(registry.read_text().replace('"%q"', '"%s"'))
    with pytest.raises(DevstackError, match="no longer fits"):
        ferret.apply_patches(other)

    ferret._fresh_dir(tmp_path / "mod")  # read-only leftovers are removable
    assert not (tmp_path / "mod").exists()


def test_ferretdb_source_hash_covers_the_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    before = ferret.source_hash()
    changed = dataclasses.replace(ferret.PATCHES[0], new=ferret.PATCHES[0].new + " // x")
    monkeypatch.setattr(ferret, "PATCHES", (changed,))
    assert ferret.source_hash() != before

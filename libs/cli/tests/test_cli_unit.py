"""inboxctl / inbox-run without a running stack: help texts, configuration, argument handling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
import typer
from inbox_cli import config, main, run_all
from inbox_devstack import DevstackConfig
from inbox_kit.auth import TokenVerifier
from typer.testing import CliRunner

runner = CliRunner()


def _all_commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            found += _all_commands(cmd, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_command_has_help() -> None:
    commands = _all_commands(typer.main.get_command(main.app))
    assert len(commands) >= 30
    for path in commands:
        result = runner.invoke(main.app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_token_is_accepted_by_the_services_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INBOX_JWT_SECRET", "s3cret-for-this-test-only-0123456789")
    result = runner.invoke(
        main.app,
        [
            *("--org", "acme", "--agent", "ana", "--role", "admin", "--team", "a,b"),
            *("--channel", "wa-1", "--channel", "fb-2", "token", "--ttl", "600"),
        ],
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    principal = TokenVerifier("s3cret-for-this-test-only-0123456789").verify(token)
    assert (principal.org_id, principal.agent_id, principal.is_admin) == ("acme", "ana", True)
    assert principal.teams == {"a", "b"}
    assert principal.channels == {"wa-1", "fb-2"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600


def test_global_options_may_follow_the_command() -> None:
    argv = ["contacts", "card", "c1", "--json", "--org", "acme", "--role=admin"]
    assert main.hoist_global_options(argv) == [
        "--json",
        "--org",
        "acme",
        "--role=admin",
        "contacts",
        "card",
        "c1",
    ]


def test_ports_default_and_overrides() -> None:
    routing = config.BY_NAME["routing"]
    assert routing.address({}) == "127.0.0.1:7062"
    assert routing.grpc_port({"INBOX_PORT_OFFSET": "1000"}) == 8062
    assert routing.metrics_port({"INBOX_PORT_OFFSET": "1000"}) == 10462
    assert routing.grpc_port({"ROUTING_GRPC_PORT": "6000", "INBOX_PORT_OFFSET": "9"}) == 6000
    assert routing.address({"INBOX_ROUTING_ADDRESS": "10.1.2.3:1"}) == "10.1.2.3:1"


def test_service_env_shares_one_secret_and_points_replies_at_contacts(tmp_path: Path) -> None:
    cfg = DevstackConfig(devstack_dir=tmp_path, kafka_port=19092, mongo_port=27018)
    base = {"INBOX_PORT_OFFSET": "100", "INBOX_JWT_SECRET": "shared", "INBOX_RUN_ISOLATION": "x1"}
    envs = {s.name: run_all.service_env(s, cfg, base) for s in config.SERVICES}
    for spec in config.SERVICES:
        env = envs[spec.name]
        assert env[f"{spec.prefix}JWT_SECRET"] == "shared"
        assert env[f"{spec.prefix}KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
        assert env[f"{spec.prefix}MONGODB_URI"] == "mongodb://127.0.0.1:27018/"
        assert env[f"{spec.prefix}GRPC_PORT"] == str(spec.default_grpc_port + 100)
        assert env[f"{spec.prefix}MONGODB_DATABASE"] == f"inbox_{spec.name}_x1"
        for setting, default in spec.consumer_groups.items():
            assert env[f"{spec.prefix}{setting}"] == f"{default}-x1"
    assert envs["replies"]["REPLIES_CONTACTS_ADDRESS"] == "127.0.0.1:7163"
    assert envs["routing"]["ROUTING_PRESENCE_CONSUMER_GROUP"] == "routing-presence-x1"
    assert envs["routing"]["ROUTING_INITIAL_OFFSET"] == "latest"


def test_default_secret_is_the_kits_development_secret() -> None:
    from inbox_kit.settings import ServiceSettings

    assert config.jwt_secret({}) == ServiceSettings().jwt_secret.get_secret_value()


def test_run_services_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INBOX_RUN_SERVICES", "replies,contacts")
    assert [s.name for s in run_all.selected()] == ["contacts", "replies"]
    monkeypatch.setenv("INBOX_RUN_SERVICES", "billing")
    with pytest.raises(run_all.StartupFailed):
        run_all.selected()


def test_json_log_lines_are_made_readable() -> None:
    line = '{"ts": "t", "level": "INFO", "logger": "x.y", "service": "s", "message": "hi", "k": 1}'
    assert run_all._pretty(line) == "INFO    x.y: hi  k=1"
    assert run_all._pretty("plain text\n") == "plain text"


def test_publish_contact_rejects_malformed_attributes() -> None:
    result = runner.invoke(main.app, ["publish", "contact", "c1", "--attr", "novalue"])
    assert result.exit_code != 0
    assert "key=value" in result.output


def test_the_demo_summary_points_at_a_replaying_backlog_only_when_a_wait_timed_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from inbox_cli.demo import Demo, StepResult, summary

    demo = Demo(timeout=1)
    demo.results.append(StepResult("f", "card", 1.0, False, "card: not seen within 1s (last: x)"))
    assert summary(demo, 1.0) == 1
    assert "INBOX_RUN_ISOLATION" in capsys.readouterr().out
    other = Demo(timeout=1)
    other.results.append(StepResult("f", "reorder", 0.1, False, "ABORTED: stale version"))
    other.results.append(StepResult("f", "ok step", 0.1, True))
    assert summary(other, 1.0) == 1
    assert "INBOX_RUN_ISOLATION" not in capsys.readouterr().out


def test_console_edge_env_points_at_the_four_services_in_dev_mode(tmp_path: Path) -> None:
    cfg = DevstackConfig(devstack_dir=tmp_path, kafka_port=19092, mongo_port=27018)
    base = {"INBOX_PORT_OFFSET": "100", "INBOX_JWT_SECRET": "shared"}
    env = run_all.service_env(config.CONSOLE, cfg, base)
    assert env["CONSOLE_HTTP_PORT"] == "8180"
    assert env["CONSOLE_JWT_SECRET"] == "shared"
    assert env["CONSOLE_DEV_MODE"] == "true"
    assert env["CONSOLE_ROUTING_ADDRESS"] == "127.0.0.1:7162"
    assert env["CONSOLE_REPLIES_ADDRESS"] == "127.0.0.1:7164"
    assert config.CONSOLE.metrics_port(base) == 0
    off = run_all.service_env(config.CONSOLE, cfg, {**base, "CONSOLE_DEV_MODE": "false"})
    assert off["CONSOLE_DEV_MODE"] == "false"


def test_run_starts_the_console_last_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INBOX_RUN_SERVICES", raising=False)
    assert [s.name for s in run_all.selected()][-1] == "console"

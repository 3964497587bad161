"""docker-compose.yml: valid against the Compose Specification schema, and wired correctly."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from inbox_contracts.topics import ALL_TOPIC_NAMES


@pytest.fixture(scope="module")
def compose(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((repo / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    # The Compose Specification schema, vendored (with its licence) by check-jsonschema.
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_matches_the_compose_spec(
    compose: dict[str, Any], compose_validator: jsonschema.protocols.Validator
) -> None:
    errors = [e.message for e in compose_validator.iter_errors(compose)]
    assert errors == []


def test_schema_check_catches_mistakes(
    compose: dict[str, Any], compose_validator: jsonschema.protocols.Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["routing"]["depends_on"]["kafka"]["condition"] = "service_ready"
    broken["services"]["presence"]["healthcheck"]["intervall"] = "5s"
    assert len(list(compose_validator.iter_errors(broken))) >= 2


def test_topic_job_creates_every_registered_topic(compose: dict[str, Any]) -> None:
    script = compose["services"]["topics"]["command"][0]
    listed = re.findall(r"\binbox\.[a-z.]+?\.v1(?:\.dlq|\.repartition)?\b", script)
    assert sorted(listed) == sorted(ALL_TOPIC_NAMES)
    assert "--partitions 6" in script and "--if-not-exists" in script
    assert compose["services"]["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_infrastructure_has_health_checks(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == (
        "broker,controller"
    )
    assert compose["services"]["mongo"]["image"].startswith("mongo:8")
    for name in ("kafka", "mongo"):
        assert compose["services"][name]["healthcheck"]["test"]


def test_services_are_configured_and_gated_on_healthy_dependencies(
    repo: Path, compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    secrets = set()
    for name, cfg in services.items():
        svc = compose["services"][name]
        prefix = cfg["prefix"]
        assert (repo / svc["build"]["dockerfile"]).is_file()
        assert svc["build"]["context"] == "."
        assert svc["build"]["args"]["SERVICE"] == name  # the services' one Dockerfile
        env = svc["environment"]
        shared = {"INBOX_DEVELOPMENT_MODE"}  # the one switch every service reads unprefixed
        assert all(key.startswith(prefix) or key in shared for key in env), (
            f"{name}: env keys need {prefix}"
        )
        assert env["INBOX_DEVELOPMENT_MODE"].startswith("${INBOX_DEVELOPMENT_MODE:-")
        assert env[f"{prefix}KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert env[f"{prefix}MONGODB_URI"].startswith("mongodb://mongo:27017")
        assert env[f"{prefix}GRPC_HOST"] == "0.0.0.0"
        assert env[f"{prefix}GRPC_PORT"] == str(cfg["grpc"])
        assert env[f"{prefix}METRICS_PORT"] == str(cfg["metrics"])
        secrets.add(env[f"{prefix}JWT_SECRET"])
        deps = svc["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["mongo"]["condition"] == "service_healthy"
        assert deps["topics"]["condition"] == "service_completed_successfully"
        test = " ".join(svc["healthcheck"]["test"])
        assert "grpc_health" in test and f"127.0.0.1:{cfg['grpc']}" in test
        assert f"127.0.0.1:{cfg['grpc']}:{cfg['grpc']}" in svc["ports"]
        assert svc["read_only"] is True and "ALL" in svc["cap_drop"]
    assert len(secrets) == 1, "one JWT secret for every service"
    replies = compose["services"]["replies"]
    assert replies["depends_on"]["contacts"]["condition"] == "service_healthy"
    assert replies["environment"]["REPLIES_CONTACTS_ADDRESS"] == "contacts:7063"


def test_host_ports_bind_to_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_kafka_images_match_the_devstack_version(compose: dict[str, Any]) -> None:
    from inbox_devstack.kafka import KAFKA_VERSION

    images = {
        s["image"] for s in compose["services"].values() if s.get("image", "").startswith("apache/")
    }
    assert images == {f"apache/kafka:{KAFKA_VERSION}"}

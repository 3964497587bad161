"""docs/quickstart.md stays true to the contracts: its grpcurl calls name real RPCs, one per
service; its kcat events are valid per docs/asyncapi.yaml, one per topic an ingestor writes,
keyed by their subject and published with our partitioner."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = (ROOT / "docs" / "quickstart.md").read_text()
SPEC: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
OUR_SERVICES = {"presence", "routing", "contacts", "replies"}


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", QUICKSTART, re.DOTALL)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def _ingestor_channels() -> dict[str, dict[str, Any]]:
    return {
        c["address"]: c
        for c in SPEC["channels"].values()
        if set(c.get("x-producers", [])) - OUR_SERVICES
    }


def _message(ref: str) -> dict[str, Any]:
    node: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def test_one_grpcurl_call_per_service_each_naming_a_real_rpc() -> None:
    calls = re.findall(r"(inbox\.(\w+)\.v1\.(\w+)Service)/(\w+)", QUICKSTART)
    assert {service for _, service, _, _ in calls} == OUR_SERVICES
    for _full, service, _, method in calls:
        proto = (ROOT / "proto" / "inbox" / service / "v1" / f"{service}.proto").read_text()
        assert re.search(rf"\brpc {method}\(", proto), f"{service} has no rpc {method}"


def test_every_kcat_producer_uses_the_murmur2_partitioner() -> None:
    producers = [c for c in _commands() if "kcat -P" in c]
    assert producers
    assert all("-X partitioner=murmur2_random" in c for c in producers)


def test_one_valid_event_per_topic_an_ingestor_writes() -> None:
    published: dict[str, dict[str, Any]] = {}
    for command in _commands():
        if "; ce " not in command:
            continue
        line = command.split("; ce ", 1)[1]
        line = line.replace("'$T'", "2026-12-01T09:00:00Z").replace("'$RANDOM'", "1")
        topic, key, body = shlex.split(line)
        event = json.loads(body)
        assert key == event["subject"], f"{topic}: the key must be the subject"
        published[topic] = event
        channel = _ingestor_channels()[topic]
        messages = {
            m["name"]: m for m in (_message(r["$ref"]) for r in channel["messages"].values())
        }
        assert event["type"] in messages, f"{event['type']} is not on {topic}"
        schema = {**SPEC, "$ref": messages[event["type"]]["payload"]["$ref"]}
        Draft202012Validator(schema).validate(event)
        assert event["time"] == event["data"]["occurred_at"]
    assert sorted(published) == sorted(_ingestor_channels())

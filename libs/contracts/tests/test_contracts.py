"""The event contracts: examples validate, envelopes round-trip, nothing breaks within v1."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from inbox_contracts import EVENT_TYPES, TOPICS, CloudEvent, MalformedEvent, decode
from inbox_contracts.events import AgentSignedOut, SignOutReason

ROOT = Path(__file__).resolve().parents[3]
SNAPSHOTS = ROOT / "libs" / "contracts" / "schemas" / "v1"


def _load_tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_has_a_valid_example_that_round_trips(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    examples = model.model_json_schema().get("examples", [])
    assert examples, f"{event_type} has no example payload"
    for example in examples:
        data = model.model_validate(example)
        envelope = CloudEvent.wrap(data, source="/test")
        decoded = decode(envelope.to_json_bytes())
        assert decoded.data == data
        assert decoded.type == event_type
        assert decoded.key == data.subject.encode()


def test_every_event_type_belongs_to_exactly_one_topic() -> None:
    owners = [cls.event_type for topic in TOPICS for cls in topic.event_types]
    assert sorted(owners) == sorted(set(owners)) == sorted(EVENT_TYPES)


def test_retried_publish_keeps_the_event_id() -> None:
    data = AgentSignedOut(
        org_id="o",
        agent_id="a",
        session_id="s",
        reason=SignOutReason.EXPIRED,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    first = CloudEvent.wrap(data, source="/inbox/presence", event_id="fixed-id")
    assert decode(first.to_json_bytes()).id == "fixed-id"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "inbox.nope.v1"}', "unknown event type"),
        (b'{"type": "inbox.presence.agent_signed_in.v1", "data": {}}', "validation error"),
    ],
)
def test_malformed_envelopes_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        decode(raw)


def test_envelope_time_must_match_event_time() -> None:
    data = AgentSignedOut(
        org_id="o",
        agent_id="a",
        session_id="s",
        reason=SignOutReason.EXPLICIT,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    body = json.loads(CloudEvent.wrap(data, source="/x").to_json_bytes())
    body["time"] = "2026-01-02T00:00:00Z"
    with pytest.raises(MalformedEvent, match="time must equal"):
        decode(body)


def _type_of(prop: dict[str, Any]) -> Any:
    return {k: prop.get(k) for k in ("type", "$ref", "anyOf", "enum", "format") if k in prop}


@pytest.mark.parametrize("snapshot", sorted(SNAPSHOTS.glob("*.json")), ids=lambda p: p.stem)
def test_no_breaking_change_against_the_v1_snapshot(snapshot: Path) -> None:
    event_type = snapshot.stem
    assert event_type in EVENT_TYPES, f"event type {event_type} was removed"
    old = json.loads(snapshot.read_text())
    new = EVENT_TYPES[event_type].model_json_schema()
    for name, prop in old["properties"].items():
        assert name in new["properties"], f"{event_type}: field {name} was removed"
        assert _type_of(new["properties"][name]) == _type_of(prop), (
            f"{event_type}: field {name} changed type"
        )
    added_required = set(new.get("required", [])) - set(old.get("required", []))
    assert not added_required, f"{event_type}: new required fields {added_required}"


def test_every_event_type_has_a_snapshot() -> None:
    missing = set(EVENT_TYPES) - {p.stem for p in SNAPSHOTS.glob("*.json")}
    assert not missing, f"run `make schemas` and commit: no snapshot for {missing}"


def test_asyncapi_document_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert _load_tool("asyncapi").build_document() == committed, "run `make asyncapi`"

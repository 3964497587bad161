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


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_a_wrapped_event_equals_the_validated_envelope_of_its_json(event_type: str) -> None:
    # what ``wrap`` builds is what a consumer validating its JSON gets, field for field
    model = EVENT_TYPES[event_type]
    for example in model.model_json_schema().get("examples", []):
        wrapped = CloudEvent.wrap(model.model_validate(example), source="/test")
        validated = type(wrapped).model_validate(wrapped.to_jsonable())
        assert wrapped == validated
        assert wrapped.to_json_bytes() == validated.to_json_bytes()


def test_an_event_without_a_source_is_refused() -> None:
    data = AgentSignedOut(
        org_id="o",
        agent_id="a",
        session_id="s",
        reason=SignOutReason.EXPLICIT,
        occurred_at=datetime.now(UTC),
    )
    with pytest.raises(ValueError, match="source"):
        CloudEvent.wrap(data, source="")


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


@pytest.mark.parametrize("snapshot", sorted(SNAPSHOTS.glob("*.json")), ids=lambda p: p.stem)
def test_no_breaking_change_against_the_v1_snapshot(snapshot: Path) -> None:
    event_type = snapshot.stem
    assert event_type in EVENT_TYPES, f"event type {event_type} was removed"
    old = json.loads(snapshot.read_text())
    new = EVENT_TYPES[event_type].model_json_schema()
    assert _load_tool("schema_compat").breaking_changes(old, new) == []


_OLD_NESTED: dict[str, Any] = {
    "$defs": {
        "Reason": {"enum": ["explicit", "expired"], "type": "string"},
        "Identity": {
            "properties": {"channel": {"type": "string"}, "handle": {"type": "string"}},
            "required": ["channel"],
            "type": "object",
        },
    },
    "properties": {
        "reason": {"$ref": "#/$defs/Reason"},
        "identities": {"items": {"$ref": "#/$defs/Identity"}, "type": "array"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["reason"],
    "type": "object",
}


def _changed(change: Any) -> dict[str, Any]:
    schema = json.loads(json.dumps(_OLD_NESTED))
    change(schema)
    return schema


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s["$defs"]["Reason"]["enum"].remove("expired"), "reason: enum values removed"),
        (
            lambda s: s["$defs"]["Identity"]["properties"].pop("handle"),
            "identities[items].handle: field removed",
        ),
        (
            lambda s: s["$defs"]["Identity"]["properties"]["handle"].update(type="integer"),
            "identities[items].handle: type changed",
        ),
        (
            lambda s: s["$defs"]["Identity"]["required"].append("handle"),
            "identities[items]: new required fields",
        ),
        (
            lambda s: s["properties"]["note"].update(anyOf=[{"type": "integer"}, {"type": "null"}]),
            "note|0: type changed",
        ),
        (lambda s: s["required"].append("note"), "(root): new required fields"),
    ],
)
def test_the_schema_diff_catches_nested_and_enum_breaks(change: Any, problem: str) -> None:
    problems = _load_tool("schema_compat").breaking_changes(_OLD_NESTED, _changed(change))
    assert any(p.startswith(problem) for p in problems), problems


def test_the_schema_diff_allows_additive_changes() -> None:
    def grow(s: dict[str, Any]) -> None:
        s["$defs"]["Reason"]["enum"].append("forced")
        s["$defs"]["Identity"]["properties"]["verified"] = {"type": "boolean"}
        s["properties"]["teams"] = {"items": {"type": "string"}, "type": "array"}

    assert _load_tool("schema_compat").breaking_changes(_OLD_NESTED, _changed(grow)) == []


def test_every_event_type_has_a_snapshot() -> None:
    missing = set(EVENT_TYPES) - {p.stem for p in SNAPSHOTS.glob("*.json")}
    assert not missing, f"run `make schemas` and commit: no snapshot for {missing}"


def test_asyncapi_document_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert _load_tool("asyncapi").build_document() == committed, "run `make asyncapi`"


def test_decoding_takes_the_one_pass_path_only_when_its_type_guess_holds() -> None:
    """``decode`` validates the JSON in one pass typed by the first ``"type"`` it finds; when
    that guess is wrong (a ``type`` field inside ``data`` first) or unknown fields must be
    dropped, it gives exactly what the general path gives."""
    from inbox_contracts.events import InboundMessageReceived, OutboundMessageSent

    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    event = CloudEvent.wrap(
        InboundMessageReceived(
            org_id="o",
            conversation_id="c",
            message_id="m",
            channel_id="ch",
            contact_id="k",
            occurred_at=at,
        ),
        source="/t",
    )
    assert decode(event.to_json_bytes()) == event
    envelope = json.loads(event.to_json_bytes())
    # data first, carrying a field "type" that names another known event type
    tricky = {
        "data": {**envelope["data"], "type": OutboundMessageSent.event_type},
        **{k: v for k, v in envelope.items() if k != "data"},
    }
    raw = json.dumps(tricky).encode()
    assert raw.index(OutboundMessageSent.event_type.encode()) < raw.index(
        InboundMessageReceived.event_type.encode()
    )
    assert decode(raw, ignore_unknown_fields=True) == event
    with pytest.raises(MalformedEvent):
        decode(raw)  # the strict reader still refuses the unknown field

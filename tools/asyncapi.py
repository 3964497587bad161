"""Write the AsyncAPI 3.0 document of every topic we own, generated from the code.

Usage: ``python tools/asyncapi.py [OUTPUT]`` (default: print to stdout). ``make asyncapi``
writes docs/asyncapi.yaml, which a test keeps in sync with the contracts.

Everything comes from the topic registry (``inbox_contracts.topics.TOPICS``) and the pydantic
models: a topic or event type added there appears here on the next ``make asyncapi``. Each
event type is one message whose payload is its full CloudEvents envelope with ``type`` as a
``const``, with the Kafka key, the headers our producers set and the validated example.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any, cast

import yaml
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.topics import TOPICS, Topic
from inbox_devstack.topics import DEFAULT_PARTITIONS
from inbox_kit import inbound as kit_inbound
from inbox_kit import kafka as kit_kafka
from inbox_kit import repartition as kit_repartition
from inbox_kit import tracing as kit_tracing

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"
KAFKA_BINDING = "0.5.0"
CONTENT_TYPE = "application/cloudevents+json"
OUR_SERVICES = ("presence", "routing", "contacts", "replies")
#: Namespace for the examples' deterministic event ids (so the document is reproducible).
EXAMPLE_IDS = uuid.UUID("0f8b1c52-6a3e-4b8e-9d1a-5c2e7f4a9b10")

PARTITIONING = (
    "Partition = `murmur2(key bytes) & 0x7fffffff % partitions`: the default partitioner of "
    "the Java client, which aiokafka (our producers) uses too. librdkafka-based clients "
    "(kcat, confluent-kafka, most Go/Node/.NET clients) default to `consistent_random` "
    "(CRC32): configure them with `partitioner=murmur2_random`. Correctness does not depend "
    "on it: a consumer that finds a record on a partition its `subject` does not hash to "
    "forwards it, unchanged, to the internal `<topic>.repartition` topic (an extra hop of "
    "latency), so placement follows the `subject`, never the producer."
)

DESCRIPTION = f"""\
The events of the inbox backend on Kafka, generated from the code (`make asyncapi`).

**Envelope.** Every message is one CloudEvents 1.0 event. *Structured mode* (what our
producers and the examples use): the whole event (`specversion`, `id`, `source`, `type`,
`time`, `subject`, `data`) is the JSON value, content type `{CONTENT_TYPE}`. *Binary mode*
(the CloudEvents SDKs' Kafka default) is accepted too: the attributes in `ce_specversion`,
`ce_id`, `ce_source`, `ce_type`, `ce_time`, `ce_subject` headers, the value is `data` alone
with `content-type: application/json`. `type` selects the message (one message per type
below, `type` is a `const`; a topic accepts only the types listed on it); `time` must equal
`data.occurred_at` (event time: all decisions use it) and may be at most
`<PREFIX>EVENT_TIME_MAX_SKEW_SECONDS` (default 300) ahead of the consumer's clock; `subject`
must equal the aggregate id named in each message, which is also the Kafka key. `id`
identifies the fact: re-publish a retried fact with the same `id`, consumers deduplicate on
it. Unknown envelope attributes (CloudEvents extensions) are allowed; consumers ignore
unknown `data` fields (a later additive version), producers should not send them.

**Key and partitioning.** The key is the UTF-8 `subject`. {PARTITIONING}

**Headers.** Our producers add `content-type: {kit_kafka.CLOUDEVENTS_CONTENT_TYPE}`,
`ce_type` and `ce_id` (copies of `type` and `id`, for filtering without parsing the value).
Other structured-mode producers should set `content-type` and may set the others.

**Tracing.** W3C Trace Context travels with each record, as the CloudEvents
distributed-tracing extension: our producers add a `traceparent` header (and `tracestate`
when there is one) carrying the span that published the record. Consumers read the
producer's context from, in this order: the `traceparent` header; in binary mode the
`ce_traceparent` / `ce_tracestate` headers; in structured mode the envelope's `traceparent` /
`tracestate` attributes. All are optional; a malformed value is ignored (the record is
processed, untraced). Spans, attributes and the `OTEL_*` settings: `docs/tracing.md`.

**Delivery.** Consumers are at least once (offsets are committed after processing) and
idempotent. A record that cannot be applied (not JSON, a type not listed on its topic, a field
failing validation, `time` differing from `data.occurred_at` or too far in the future,
`subject` differing from the aggregate id, a value the service refuses), or that still fails
after bounded retries, is copied unchanged to the topic's dead-letter topic `<topic>.dlq`
with `x-dlq-*` headers saying why (see the `DeadLetter` message; `x-dlq-reason` is a stable
code); the partition goes on. Database or broker outages are never dead-lettered: the record
is redelivered.

**Compatibility.** Within `v1` changes are additive only (new optional fields, new event types,
new enum values, new topics); a breaking change gets a new `v2` type and topic. See
CHANGELOG.md.
"""

#: Every ``x-dlq-reason`` code (the constants named REASON_* of the kit's consumer modules).
DEAD_LETTER_REASONS = sorted(
    {
        value
        for module in (kit_kafka, kit_inbound)
        for name, value in vars(module).items()
        if name.startswith("REASON_") and isinstance(value, str)
    }
)

DEAD_LETTER_HEADERS: dict[str, str] = {
    kit_kafka.H_REASON: "Why, as a stable code: "
    + ", ".join(f"`{r}`" for r in DEAD_LETTER_REASONS)
    + ".",
    kit_kafka.H_ERROR: "Why the message could not be processed (at most 2,000 characters).",
    kit_kafka.H_ERROR_TYPE: "The error's class, e.g. `MalformedEvent`. For `refused` (a "
    "well-formed event a service's rule does not accept) it names the rule: contacts "
    "`PermanentError` (a profile it cannot store, e.g. an unknown attribute); routing "
    "`BehindHorizon` (a conversation event stamped at or before that conversation's compaction "
    "horizon, so it can no longer be folded in; routing README) and `MisplacedMark` (a "
    "presence progress mark on a partition other than the one it names).",
    kit_kafka.H_TOPIC: "The topic the message was consumed from.",
    kit_kafka.H_PARTITION: "Its partition (decimal).",
    kit_kafka.H_OFFSET: "Its offset (decimal).",
    kit_kafka.H_GROUP: "The consumer group that gave up on it.",
    kit_kafka.H_ATTEMPTS: "How many times processing was tried (decimal).",
    kit_kafka.H_FAILED_AT: "When it was dead-lettered (ISO 8601, UTC).",
}


def _unwrap(text: str) -> str:
    """Join the hard-wrapped lines of each paragraph (YAML would keep the line breaks)."""
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text).strip()


def _contracts_version() -> str:
    """The newest released version in CHANGELOG.md (the contracts' version, see there)."""
    match = re.search(r"^## \[(\d+\.\d+\.\d+)\]", CHANGELOG.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError("CHANGELOG.md has no released version heading (## [x.y.z])")
    return match.group(1)


def _message_id(model: type[EventData]) -> str:
    return model.__name__


def _ref(schema: Any) -> Any:
    """Rewrite pydantic's local ``#/$defs/X`` references to ``#/components/schemas/X``."""
    if isinstance(schema, dict):
        return {
            k: ("#/components/schemas/" + v.removeprefix("#/$defs/") if k == "$ref" else _ref(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_ref(v) for v in schema]
    return schema


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if name in schemas and schemas[name] != schema:
        raise ValueError(f"two different schemas are both named {name!r}")
    schemas[name] = schema


_TRACEPARENT = {
    "type": "string",
    "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    "examples": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
}
#: The W3C Trace Context headers (the CloudEvents distributed-tracing extension).
TRACE_HEADERS: dict[str, Any] = {
    kit_tracing.H_TRACEPARENT: _TRACEPARENT
    | {
        "description": "W3C `traceparent` of the span that published the record (optional "
        "for other producers; consumers continue or link to that trace)."
    },
    kit_tracing.H_TRACESTATE: {
        "type": "string",
        "description": "W3C `tracestate` that goes with `traceparent` (optional).",
    },
}
#: The extension as envelope attributes (structured mode) — what a CloudEvents SDK writes.
TRACE_ATTRIBUTES: dict[str, Any] = {
    "traceparent": _TRACEPARENT
    | {
        "description": "CloudEvents distributed-tracing extension (optional): the W3C "
        "`traceparent` of the event's producer; read when the record has no `traceparent` "
        "header."
    },
    "tracestate": {
        "type": "string",
        "description": "CloudEvents distributed-tracing extension (optional): W3C `tracestate`.",
    },
}


def _envelope_schema(model: type[EventData], schemas: dict[str, Any]) -> dict[str, Any]:
    """The full CloudEvent of ``model`` (its nested schemas go to ``schemas``)."""
    envelope_cls = cast(type[CloudEvent[EventData]], CloudEvent.__class_getitem__(model))
    envelope: dict[str, Any] = envelope_cls.model_json_schema()
    for name, nested in envelope.pop("$defs", {}).items():
        _add_schema(schemas, name, _ref(nested))
    properties = envelope["properties"]
    properties["type"] = {
        "type": "string",
        "const": model.event_type,
        "description": "CloudEvents type of this message.",
    }
    properties["subject"]["description"] = (
        f"Aggregate id: equals `data.{model.subject_field}`. Also the Kafka message key."
    )
    properties.update(TRACE_ATTRIBUTES)
    envelope["title"] = f"{model.__name__}Event"
    envelope["description"] = f"CloudEvents envelope of `{model.event_type}`."
    rewritten: dict[str, Any] = _ref(envelope)
    return rewritten


def _example(model: type[EventData], topic: Topic) -> list[dict[str, Any]]:
    raw_examples = model.model_json_schema().get("examples", [])
    if not raw_examples:
        raise ValueError(f"{model.event_type} has no example payload")
    source = "/inbox/" + topic.producers[0] if topic.producers[0] in OUR_SERVICES else "/ingestor"
    examples = []
    for index, raw in enumerate(raw_examples):
        data = model.model_validate(raw)
        event_id = str(uuid.uuid5(EXAMPLE_IDS, f"{model.event_type}/{index}"))
        event = CloudEvent.wrap(data, source=source, event_id=event_id)
        examples.append(
            {
                "name": f"{model.__name__}-{index + 1}",
                "summary": f"A valid `{model.event_type}` event, key `{event.subject}`.",
                "headers": kit_kafka.cloudevent_headers(event.type, event.id),
                "payload": json.loads(event.to_json_bytes()),
            }
        )
    return examples


def _summary(model: type[EventData]) -> str:
    return _unwrap(inspect.cleandoc(model.__doc__ or "").split("\n\n", 1)[0])


def _description(model: type[EventData], topic: Topic) -> str:
    doc = _unwrap(re.sub(r"``([^`]+)``", r"`\1`", inspect.cleandoc(model.__doc__ or "")))
    return (
        f"{doc}\n\nCloudEvents `type`: `{model.event_type}`. Topic: `{topic.name}`. "
        f"Kafka key: `data.{model.subject_field}` (= `subject`)."
    )


def _message(model: type[EventData], topic: Topic, schemas: dict[str, Any]) -> dict[str, Any]:
    payload_name = f"{model.__name__}Event"
    _add_schema(schemas, payload_name, _envelope_schema(model, schemas))
    return {
        "name": model.event_type,
        "title": model.__name__,
        "summary": _summary(model),
        "description": _description(model, topic),
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                "content-type": {
                    "type": "string",
                    "const": kit_kafka.CLOUDEVENTS_CONTENT_TYPE,
                    "description": "Structured-mode CloudEvents.",
                },
                "ce_type": {"type": "string", "const": model.event_type},
                "ce_id": {"type": "string", "description": "Copy of the envelope's `id`."},
                **TRACE_HEADERS,
            },
        },
        "payload": {"$ref": f"#/components/schemas/{payload_name}"},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"UTF-8 `data.{model.subject_field}` (the envelope's "
                    "`subject`). Partitioned with murmur2 (see the channel).",
                },
                "bindingVersion": KAFKA_BINDING,
                "x-key-location": "$message.payload#/subject",
            }
        },
        "examples": _example(model, topic),
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "dead-letter",
        "title": "DeadLetter",
        "summary": "A message a consumer gave up on, copied unchanged from its source topic.",
        "description": "Value and key are the original bytes (possibly not JSON at all); the "
        "original headers are kept and these `x-dlq-*` headers added. Nothing consumes the "
        "dead-letter topics automatically: inspect them (`kcat -C -t <topic>.dlq -f "
        "'%h %s\\n'`), fix the cause, re-publish to the source topic if appropriate.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": sorted(DEAD_LETTER_HEADERS),
            "properties": {
                name: {"type": "string", "description": text}
                | ({"enum": DEAD_LETTER_REASONS} if name == kit_kafka.H_REASON else {})
                for name, text in DEAD_LETTER_HEADERS.items()
            },
        },
        "payload": {"description": "The original message value, unchanged."},
    }


def _channel_id(name: str) -> str:
    return name


def _operation_id(action: str, topic_name: str) -> str:
    return action + "-" + topic_name.replace(".", "-")


def _companions(topic: Topic) -> str:
    text = (
        f"Dead letters: `{topic.dead_letter}`."
        if topic.dead_lettered
        else ("No dead-letter topic (a record its readers cannot use is skipped).")
    )
    if topic.repartitioned:
        text += (
            f" Records on a partition their `subject` does not hash to are forwarded to the "
            f"internal topic `{topic.repartition}`."
        )
    return text


def _kafka_channel(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "kafka": {
            "topic": name,
            "partitions": DEFAULT_PARTITIONS,
            "bindingVersion": KAFKA_BINDING,
            **extra,
        }
    }


def _refs(channel: str, message_ids: list[str]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in message_ids]


def _topic_channels(topic: Topic, message_ids: list[str]) -> dict[str, Any]:
    """The topic's channel and its companions (dead letters, repartition)."""
    types = ", ".join(f"`{m.event_type}`" for m in topic.event_types)
    channel_messages = {m: {"$ref": f"#/components/messages/{m}"} for m in message_ids}
    channels: dict[str, Any] = {
        _channel_id(topic.name): {
            "address": topic.name,
            "title": topic.name,
            "description": (
                f"{topic.description}\n\nEvent types: {types}. Key: `{topic.key}`. "
                f"Producers: {', '.join(topic.producers)}. "
                f"Consumers: {', '.join(topic.consumers)}. {_companions(topic)}"
            ),
            "messages": channel_messages,
            "x-producers": list(topic.producers),
            "x-consumers": list(topic.consumers),
            "bindings": _kafka_channel(
                topic.name, **{"x-partitioner": "murmur2", "x-partitioning": PARTITIONING}
            ),
        }
    }
    if topic.dead_lettered:
        channels[_channel_id(topic.dead_letter)] = {
            "address": topic.dead_letter,
            "title": topic.dead_letter,
            "description": f"Dead letters of `{topic.name}` (same key, value and headers, plus "
            "the `x-dlq-*` headers).",
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": _kafka_channel(topic.dead_letter),
        }
    if topic.repartitioned:
        channels[_channel_id(topic.repartition)] = {
            "address": topic.repartition,
            "title": topic.repartition,
            "description": f"Internal: records of `{topic.name}` found on a partition their "
            "`subject` does not hash to (murmur2), forwarded unchanged to partition "
            f"`murmur2(subject) % partitions`, with header "
            f"`{kit_repartition.H_REPARTITIONED_FROM}: <topic>/<partition>/<offset>`. Read "
            f"by the same consumer group as `{topic.name}`. Never publish to it.",
            "messages": channel_messages,
            "bindings": _kafka_channel(topic.repartition),
        }
    return channels


def _topic_operations(topic: Topic, message_ids: list[str]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    ours = [c for c in topic.consumers if c.split()[0] in OUR_SERVICES]
    if ours:
        operations[_operation_id("receive", topic.name)] = {
            "action": "receive",
            "title": f"{', '.join(ours)} consume {topic.name}",
            "summary": f"Consumed by {', '.join(ours)} (at least once).",
            "channel": {"$ref": f"#/channels/{_channel_id(topic.name)}"},
            "messages": _refs(_channel_id(topic.name), message_ids),
        }
    if ours and topic.dead_lettered:
        operations[_operation_id("dead-letter", topic.name)] = {
            "action": "send",
            "title": f"Dead-letter {topic.name}",
            "summary": f"What {', '.join(ours)} could not process goes to {topic.dead_letter}.",
            "channel": {"$ref": f"#/channels/{_channel_id(topic.dead_letter)}"},
            "messages": _refs(_channel_id(topic.dead_letter), ["DeadLetter"]),
        }
    ours_producing = [p for p in topic.producers if p in OUR_SERVICES]
    if ours_producing:
        operations[_operation_id("send", topic.name)] = {
            "action": "send",
            "title": f"{', '.join(ours_producing)} publish {topic.name}",
            "summary": f"Published by {', '.join(ours_producing)}.",
            "channel": {"$ref": f"#/channels/{_channel_id(topic.name)}"},
            "messages": _refs(_channel_id(topic.name), message_ids),
        }
    return operations


def build_spec() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {"DeadLetter": _dead_letter_message()}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        message_ids = []
        for model in topic.event_types:
            message_id = _message_id(model)
            if message_id in messages:
                raise ValueError(f"two event types are both named {message_id!r}")
            messages[message_id] = _message(model, topic, schemas)
            message_ids.append(message_id)
        # re-published unchanged from their home topic (listed earlier): same message
        message_ids += [_message_id(model) for model in topic.republished]
        channels.update(_topic_channels(topic, message_ids))
        operations.update(_topic_operations(topic, message_ids))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Inbox events",
            "version": _contracts_version(),
            "description": _unwrap(DESCRIPTION),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "development": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "protocolVersion": "4.4.0",
                "description": "The local broker of `make run` / `make infra` (port: "
                "`DEVSTACK_KAFKA_PORT`). Every topic has 6 partitions.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared objects out in full: plain YAML without anchors, for every tool."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def build_document() -> str:
    return yaml.dump(
        build_spec(), Dumper=_NoAliasDumper, sort_keys=False, width=100, allow_unicode=True
    )


def main(argv: list[str]) -> int:
    document = build_document()
    if argv:
        Path(argv[0]).write_text(document)
    else:
        sys.stdout.write(document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

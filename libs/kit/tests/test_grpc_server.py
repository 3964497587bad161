"""A real grpc.aio server from the kit: health, reflection, auth, error mapping."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from inbox_kit import grpc_server
from inbox_kit.auth import TokenVerifier, current_principal, mint_token
from inbox_kit.errors import InvalidArgument
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_testing import wait_until
from prometheus_client import REGISTRY

SECRET = "kit-test-secret-0123456789abcdefgh"
SERVICE = "inbox.test.v1.EchoService"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    if not request:
        raise InvalidArgument("text", "must not be empty")
    principal = current_principal()
    return f"{principal.org_id}/{principal.agent_id}: ".encode() + request


async def _never_answers(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await asyncio.wait_for(asyncio.Event().wait(), timeout=30)  # until the client gives up
    return request


def _register(servicer: Any, server: grpc.aio.Server) -> None:
    def unary(behaviour: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=lambda b: b, response_serializer=lambda b: b
        )

    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": unary(_echo), "Slow": unary(_never_answers)}
            )
        ]
    )


@pytest.fixture
async def server() -> Any:
    srv = GrpcServer(
        [ServiceRegistration(SERVICE, _register, None)], verifier=TokenVerifier(SECRET)
    )
    await srv.start()
    yield srv
    await srv.stop(0)


async def _echo_call(address: str, body: bytes, token: str | None) -> bytes:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/Echo", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        response: bytes = await call(body, metadata=metadata, timeout=5)
        return response


async def test_health_answers_without_a_token(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        named = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert overall.status == named.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_a_valid_token_reaches_the_handler_as_the_principal(server: GrpcServer) -> None:
    token = mint_token(SECRET, org_id="acme", agent_id="ana")
    assert await _echo_call(server.address, b"hi", token) == b"acme/ana: hi"


@pytest.mark.parametrize(
    "token",
    [None, "garbage", mint_token("wrong-secret-0123456789abcdefghijk", org_id="o", agent_id="a")],
)
async def test_missing_or_bad_tokens_are_refused(server: GrpcServer, token: str | None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _echo_call(server.address, b"hi", token)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # ...and the server keeps serving.
    ok = mint_token(SECRET, org_id="acme", agent_id="ana")
    assert await _echo_call(server.address, b"again", ok) == b"acme/ana: again"


async def test_domain_errors_become_status_codes_naming_the_field(server: GrpcServer) -> None:
    token = mint_token(SECRET, org_id="acme", agent_id="ana")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _echo_call(server.address, b"", token)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "text" in (refused.value.details() or "")


async def test_stopping_flips_health_to_not_serving() -> None:
    srv = GrpcServer(
        [ServiceRegistration(SERVICE, _register, None)], verifier=TokenVerifier(SECRET)
    )
    await srv.start()
    await srv.set_serving(False)
    async with grpc.aio.insecure_channel(srv.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    await srv.stop(0)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def _samples(metric: str, method_suffix: str) -> dict[tuple[str, str], float]:
    """(sample name, code) -> value of the kit's gRPC metrics for methods ending in ``suffix``."""
    values: dict[tuple[str, str], float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name.startswith(metric) and sample.labels.get("method", "").endswith(
                method_suffix
            ):
                key = (sample.name, sample.labels.get("code", ""))
                values[key] = values.get(key, 0.0) + sample.value
    return values


async def test_a_call_past_its_deadline_is_counted_with_its_latency(server: GrpcServer) -> None:
    token = mint_token(SECRET, org_id="acme", agent_id="ana")
    before = _samples("inbox_grpc_call", "/Slow")
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/Slow", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.aio.AioRpcError) as timed_out:
            await call(b"x", metadata=(("authorization", f"Bearer {token}"),), timeout=0.3)
    assert timed_out.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    def counted() -> dict[tuple[str, str], float] | None:
        now = _samples("inbox_grpc_call", "/Slow")
        key = ("inbox_grpc_calls_total", "DEADLINE_EXCEEDED")
        return now if now.get(key, 0) == before.get(key, 0) + 1 else None

    after = await wait_until(counted, timeout=10)
    observed = ("inbox_grpc_call_seconds_count", "DEADLINE_EXCEEDED")
    assert after[observed] == before.get(observed, 0) + 1
    elapsed = after[("inbox_grpc_call_seconds_sum", "DEADLINE_EXCEEDED")] - before.get(
        ("inbox_grpc_call_seconds_sum", "DEADLINE_EXCEEDED"), 0
    )
    assert 0.2 <= elapsed < 10


async def test_a_refused_call_is_counted_with_its_code_and_latency(server: GrpcServer) -> None:
    before = _samples("inbox_grpc_call", "/Echo")
    with pytest.raises(grpc.aio.AioRpcError):
        await _echo_call(server.address, b"hi", None)
    after = _samples("inbox_grpc_call", "/Echo")
    for name in ("inbox_grpc_calls_total", "inbox_grpc_call_seconds_count"):
        key = (name, "UNAUTHENTICATED")
        assert after[key] == before.get(key, 0) + 1


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer abc"),), "abc"),
        ((("authorization", "bearer  abc "),), "abc"),
        ((("authorization", b"Bearer abc"),), "abc"),
        ((("authorization", b"Bearer \xff"),), "\ufffd"),
        ((("authorization", "Basic abc"),), None),
        ((("authorization", "Bearer first"), ("authorization", "Bearer second")), "first"),
        ((("user-agent", "x"),), None),
        (None, None),
    ],
)
def test_the_guard_reads_the_token_from_the_first_authorization_entry(
    metadata: Any, token: str | None
) -> None:
    assert grpc_server._read_metadata(metadata) == (token, None)


def test_the_guard_reads_token_and_trace_context_in_one_pass() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token, caller = grpc_server._read_metadata(
        (("traceparent", traceparent), ("authorization", "Bearer t"), ("tracestate", "k=v"))
    )
    assert token == "t"
    assert caller is not None
    assert (caller.trace_id, caller.span_id) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
    )
    assert caller.trace_state.get("k") == "v"
    assert grpc_server._read_metadata((("traceparent", "garbage"),)) == (None, None)

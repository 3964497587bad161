"""The kit's gRPC client conventions on real grpc.aio servers: round_robin over every address,
retries of idempotent methods on UNAVAILABLE, deadlines propagated from the incoming call."""

from __future__ import annotations

from collections import Counter
from typing import Any

import grpc
from inbox_kit.auth import TokenVerifier, mint_token
from inbox_kit.grpc_client import insecure_channel, outgoing_timeout, service_config
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration

SERVICE = "inbox.test.v1.ClientService"
SECRET = "kit-client-test-secret-0123456789abcd"


def _identity(b: bytes) -> bytes:
    return b


async def _server(behaviours: dict[str, Any]) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=_identity, response_serializer=_identity
        )
        for name, fn in behaviours.items()
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_calls_spread_round_robin_over_every_address() -> None:
    served: Counter[str] = Counter()

    def named(name: str) -> Any:
        async def read(request: bytes, context: Any) -> bytes:
            served[name] += 1
            return name.encode()

        return read

    first, a = await _server({"Read": named("a")})
    second, b = await _server({"Read": named("b")})
    try:
        target = "ipv4:" + ",".join([a, b])  # what a headless Service's DNS name resolves to
        async with insecure_channel(target, service=SERVICE) as channel:
            read = channel.unary_unary(
                f"/{SERVICE}/Read", request_serializer=_identity, response_deserializer=_identity
            )
            for _ in range(50):  # until both subchannels are connected
                await read(b"", timeout=5)
                if len(served) == 2:
                    break
            warmup = Counter(served)
            for _ in range(10):
                await read(b"", timeout=5)
    finally:
        await first.stop(0)
        await second.stop(0)
    assert served - warmup == {"a": 5, "b": 5}


async def test_idempotent_reads_are_retried_on_unavailable_and_writes_are_not() -> None:
    attempts: Counter[str] = Counter()

    def flaky(name: str) -> Any:
        async def handle(request: bytes, context: Any) -> bytes:
            attempts[name] += 1
            if attempts[name] == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "replica going away")
            return b"ok"

        return handle

    server, address = await _server({"Read": flaky("Read"), "Write": flaky("Write")})
    try:
        async with insecure_channel(address, service=SERVICE, idempotent_methods=["Read"]) as ch:
            read = ch.unary_unary(
                f"/{SERVICE}/Read", request_serializer=_identity, response_deserializer=_identity
            )
            write = ch.unary_unary(
                f"/{SERVICE}/Write", request_serializer=_identity, response_deserializer=_identity
            )
            assert await read(b"", timeout=5) == b"ok"
            try:
                await write(b"", timeout=5)
                raised = None
            except grpc.aio.AioRpcError as exc:
                raised = exc.code()
    finally:
        await server.stop(0)
    assert attempts == {"Read": 2, "Write": 1}
    assert raised is grpc.StatusCode.UNAVAILABLE


def test_the_service_config_names_round_robin_and_the_retry_policy() -> None:
    assert '"round_robin"' in service_config(SERVICE)
    assert "methodConfig" not in service_config(SERVICE)
    assert '"retryableStatusCodes": ["UNAVAILABLE"]' in service_config(SERVICE, ["Read"])


async def test_a_downstream_call_gets_what_is_left_of_the_incoming_deadline() -> None:
    seen_downstream: list[float] = []

    async def downstream(request: bytes, context: Any) -> bytes:
        seen_downstream.append(context.time_remaining())
        return b"done"

    backend, backend_address = await _server({"Read": downstream})

    async def upstream(request: bytes, context: Any) -> bytes:
        async with insecure_channel(backend_address, service=SERVICE) as channel:
            read = channel.unary_unary(
                f"/{SERVICE}/Read", request_serializer=_identity, response_deserializer=_identity
            )
            return bytes(await read(b"", timeout=outgoing_timeout(2.0)))

    def register(_servicer: Any, server: Any) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            upstream, request_deserializer=_identity, response_serializer=_identity
        )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"Upstream": handler})]
        )

    front = GrpcServer(
        [ServiceRegistration(SERVICE, register, None)], verifier=TokenVerifier(SECRET)
    )
    await front.start()
    token = mint_token(SECRET, org_id="acme", agent_id="ana")
    try:
        async with grpc.aio.insecure_channel(front.address) as channel:
            call = channel.unary_unary(
                f"/{SERVICE}/Upstream",
                request_serializer=_identity,
                response_deserializer=_identity,
            )
            metadata = (("authorization", f"Bearer {token}"),)
            assert await call(b"", metadata=metadata, timeout=0.8) == b"done"
            assert await call(b"", metadata=metadata, timeout=30) == b"done"
    finally:
        await front.stop(0)
        await backend.stop(0)
    short, long = seen_downstream
    assert 0 < short < 0.8  # the caller's 0.8 s, not the downstream default of 2 s
    assert 0.8 < long <= 2.1  # capped by the downstream default (grpc-timeout rounds up)

"""The admin console in a real browser against the real stack.

``inbox-run`` starts the four services and the console edge (own ports, databases and
consumer groups); this test seeds an org over Kafka and gRPC as ingestors and the inbox app
would (a contact profile; an agent who signs in and gets a NEW conversation assigned), then
``web/e2e/console.e2e.mjs`` drives headless Chromium (npm playwright-core + Debian's
chromium) through every page: drag and keyboard reorder, toggles, a stale reorder, custom
attributes, Remove assignment + a sign-out watched on the live view, saved replies (sharing,
/shortcut search, preview with the contact's name), axe-core on each page, screenshots into
``services/console/web/artifacts/`` (git-ignored). Finally the backend is asked directly
whether the conversation really was unassigned automatically.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from inbox.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from inbox.presence.v1 import presence_pb2, presence_pb2_grpc
from inbox.routing.v1 import routing_pb2, routing_pb2_grpc
from inbox_cli import api
from inbox_cli.config import BY_NAME, CONSOLE, jwt_secret
from inbox_kit.auth import mint_token
from inbox_testing import Infra, bearer, wait_until
from inbox_testing.stack import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

WEB = Path(__file__).resolve().parents[2] / "web"
ARTIFACTS = WEB / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SERVICES = ("presence", "routing", "contacts", "replies", "console")


def _prerequisites() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (make browser)")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        missing.append("services/console/web/node_modules (make console-web)")
    if not (WEB / "dist" / "index.html").is_file():
        missing.append("services/console/web/dist (make console-web)")
    if shutil.which("node") is None:
        missing.append("node")
    if missing:
        pytest.fail("browser test prerequisites missing: " + ", ".join(missing))


async def _unless_not_found(call: Awaitable[Any]) -> Any:
    """The reply, or None while the service has not seen the thing yet (NOT_FOUND)."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def _seed(env: dict[str, str], seed: dict[str, Any]) -> None:
    """A contact, and a signed-in agent with a NEW conversation assigned by hand."""
    secret = jwt_secret(env)
    org = seed["org"]
    admin = mint_token(secret, org_id=org, agent_id=seed["admin"], role="admin")
    agent = mint_token(secret, org_id=org, agent_id=seed["agent"])
    bootstrap = env["INBOX_KAFKA_BOOTSTRAP"]
    await api.publish(
        bootstrap,
        *api.contact_profile(
            org,
            seed["contact"],
            {
                "name": seed["contact_name"],
                "email": "ada@example.com",
                "phone": "+44 20 7946 0000",
                "account_number": "ACC-1815",
                "language": "en",
                "membership": "gold",
            },
        ),
    )
    address = {name: BY_NAME[name].address(env) for name in ("presence", "routing", "contacts")}
    async with grpc.aio.insecure_channel(address["contacts"]) as channel:
        contacts = contacts_pb2_grpc.ContactsServiceStub(channel)

        async def card_ready() -> bool:
            card = contacts.GetContactCard(
                contacts_pb2.GetContactCardRequest(contact_id=seed["contact"]),
                metadata=bearer(admin),
                timeout=5,
            )
            return await _unless_not_found(card) is not None

        await wait_until(card_ready, timeout=30)
    async with grpc.aio.insecure_channel(address["presence"]) as channel:
        await presence_pb2_grpc.PresenceServiceStub(channel).SignIn(
            presence_pb2.SignInRequest(client_description="browser test"),
            metadata=bearer(agent),
            timeout=10,
        )
    await api.publish(bootstrap, *api.inbound(org, seed["conversation"], seed["contact"], "ch-web"))
    await api.publish(bootstrap, *api.assigned(org, seed["conversation"], seed["agent"], "admin"))
    async with grpc.aio.insecure_channel(address["routing"]) as channel:
        routing = routing_pb2_grpc.RoutingServiceStub(channel)

        async def assigned() -> bool:
            reply = await _unless_not_found(
                routing.GetConversation(
                    routing_pb2.GetConversationRequest(conversation_id=seed["conversation"]),
                    metadata=bearer(admin),
                    timeout=5,
                )
            )
            return reply is not None and reply.conversation.assignee_id == seed["agent"]

        await wait_until(assigned, timeout=30)


async def _auto_unassigned(env: dict[str, str], seed: dict[str, Any]) -> list[Any]:
    admin = mint_token(jwt_secret(env), org_id=seed["org"], agent_id="checker", role="admin")
    async with grpc.aio.insecure_channel(BY_NAME["routing"].address(env)) as channel:
        routing = routing_pb2_grpc.RoutingServiceStub(channel)
        conversation = await routing.GetConversation(
            routing_pb2.GetConversationRequest(conversation_id=seed["conversation"]),
            metadata=bearer(admin),
            timeout=5,
        )
        assert conversation.conversation.assignee_id == ""
        trail = await routing.GetAuditTrail(
            routing_pb2.GetAuditTrailRequest(conversation_id=seed["conversation"]),
            metadata=bearer(admin),
            timeout=5,
        )
    return [e for e in trail.entries if e.kind == routing_pb2.AUDIT_ENTRY_KIND_AUTO_UNASSIGNED]


async def test_the_console_in_a_real_browser(infra: Infra, tmp_path: Path) -> None:
    _prerequisites()
    suffix = uuid.uuid4().hex[:8]
    seed = {
        "org": f"org-console-{suffix}",
        "admin": f"admin-{suffix}",
        "agent": f"agent-{suffix}",
        "contact": f"contact-{suffix}",
        "contact_name": "Ada Lovelace",
        "conversation": f"conv-{suffix}",
        "shortcut": f"refund-{suffix}",
    }
    # A long session timeout: the agent must still be signed in when the admin signs them out.
    with running_stack(
        infra, tmp_path, SERVICES, extra_env={"PRESENCE_SESSION_TIMEOUT_SECONDS": "600"}
    ) as stack:
        env = stack.env
        await _seed(env, seed)
        url = f"http://{CONSOLE.address(env)}"
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        run = await asyncio.to_thread(
            subprocess.run,
            ["node", "e2e/console.e2e.mjs"],
            cwd=WEB,
            env={
                **os.environ,
                "CONSOLE_URL": url,
                "E2E_SEED": json.dumps(seed),
                "E2E_ARTIFACTS": str(ARTIFACTS),
                "CHROMIUM": CHROMIUM,
            },
            capture_output=True,
            text=True,
            timeout=240,
        )
        print(run.stdout)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, f"no RESULT line:\n{run.stdout}\n{run.stderr}\n{stack.log()}"
        result = json.loads(lines[-1].removeprefix("RESULT "))
        assert run.returncode == 0, result.get("error", run.stderr)
        assert result["card_after_drag"][0] == "email"
        for page in ("routing", "live", "attributes", "replies", "login"):
            assert all(v["impact"] not in {"serious", "critical"} for v in result["axe"][page])
            assert (ARTIFACTS / f"{page}.png").stat().st_size > 10_000
        assignment_axe = result["axe"]["routing-assignment"]
        assert all(v["impact"] not in {"serious", "critical"} for v in assignment_axe)
        print(f"R1 seen in the browser {result['unassigned_seen_ms']} ms after the sign-out click")
        decisions = await _auto_unassigned(env, seed)
        assert [d.previous_assignee_id for d in decisions] == [seed["agent"]]
        assert decisions[0].reason == routing_pb2.AUTO_UNASSIGN_REASON_AGENT_SIGNED_OUT
        assert stack.stop() == 0, stack.log()

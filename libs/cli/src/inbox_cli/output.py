"""What every ``inboxctl`` command shares: the global options (``STATE``, set by the root
callback), output as tables or ``--json``, and gRPC calls that exit 1 with the error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import typer
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from inbox_cli import api

console = Console()
err = Console(stderr=True)


@dataclass
class Ctx:
    org: str = "org-demo"
    agent: str = "agent-dev"
    role: str = "agent"
    teams: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    token: str | None = None
    json: bool = False
    timeout: float = 10.0

    def bearer(self) -> tuple[tuple[str, str]]:
        tok = self.token or api.token(
            self.org, self.agent, self.role, self.teams, channels=self.channels
        )
        return api.bearer(tok)


STATE = Ctx()


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        if "display" in value:
            return str(value["display"])
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def emit(data: Any, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """JSON with ``--json``; else a table (a list of rows) or key/value pairs (a dict)."""
    if isinstance(data, Message):
        data = api.to_dict(data)
    if STATE.json:
        console.print_json(json.dumps(data, default=str))
        return
    if isinstance(data, list):
        rows: list[dict[str, Any]] = data
        cols = list(columns or (rows[0].keys() if rows else []))
        table = Table(title=title, show_lines=False)
        for c in cols:
            table.add_column(c)
        for row in rows:
            table.add_row(*(_fmt(row.get(c, "")) for c in cols))
        console.print(table)
        if not rows:
            console.print("(none)")
        return
    table = Table(title=title, show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        if columns is None or key in columns:
            table.add_row(key, _fmt(value))
    console.print(table)


@contextmanager
def rpc_errors() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        err.print(f"[red]error[/red] {api.describe_rpc_error(exc)}", markup=True, highlight=False)
        raise typer.Exit(1) from None


def _stub(service: str, factory: Callable[[grpc.Channel], Any]) -> Any:
    channel = grpc.insecure_channel(api.address(service))
    return factory(channel)


def call(service: str, factory: Callable[[grpc.Channel], Any], method: str, request: Any) -> Any:
    stub = _stub(service, factory)
    with rpc_errors():
        return getattr(stub, method)(request, metadata=STATE.bearer(), timeout=STATE.timeout)

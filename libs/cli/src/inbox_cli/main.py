"""``inboxctl``: the developer/admin command line for the inbox services."""

from __future__ import annotations

import typer

app = typer.Typer(help="Developer and admin CLI for the inbox backend.", no_args_is_help=True)

"""Prometheus metrics endpoint (``GET /metrics``) on its own port."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def start_metrics_server(host: str, port: int) -> int | None:
    """Serve /metrics; port 0 disables. Returns the port served, if any."""
    if port == 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    actual = int(server.server_port)
    log.info("metrics serving", extra={"address": f"{host}:{actual}"})
    return actual

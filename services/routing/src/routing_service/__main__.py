"""``python -m routing_service`` / ``inbox-routing``: run the routing service until SIGTERM."""

from __future__ import annotations

from inbox_kit.logging import configure_logging
from inbox_kit.metrics import start_metrics_server
from inbox_kit.process import run_service

from routing_service.bootstrap import build
from routing_service.settings import RoutingSettings


def main() -> None:
    settings = RoutingSettings()
    configure_logging("routing", settings.log_level)
    start_metrics_server(settings.grpc_host, settings.metrics_port)
    run_service(settings, lambda: _serve(settings))


async def _serve(settings: RoutingSettings) -> None:
    await build(settings).runtime.run_forever()


if __name__ == "__main__":
    main()

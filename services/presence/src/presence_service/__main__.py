"""``python -m presence_service`` / ``inbox-presence``: run one presence replica."""

from __future__ import annotations

from inbox_kit.logging import configure_logging
from inbox_kit.metrics import start_metrics_server
from inbox_kit.process import run_service

from presence_service.bootstrap import bootstrap
from presence_service.settings import PresenceSettings


async def _run(settings: PresenceSettings) -> None:
    runtime, _ = await bootstrap(settings)
    await runtime.run_forever()


def main() -> None:
    settings = PresenceSettings()
    configure_logging("presence", settings.log_level)
    start_metrics_server(settings.grpc_host, settings.metrics_port)
    run_service(settings, lambda: _run(settings))


if __name__ == "__main__":
    main()

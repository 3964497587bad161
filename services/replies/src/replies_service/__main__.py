"""``python -m replies_service`` / ``inbox-replies``: run the replies service."""

from __future__ import annotations

import asyncio

from inbox_kit.logging import configure_logging
from inbox_kit.metrics import start_metrics_server

from replies_service.bootstrap import bootstrap
from replies_service.settings import RepliesSettings


def main() -> None:
    settings = RepliesSettings()
    configure_logging(settings.service_name, settings.log_level)
    start_metrics_server(settings.grpc_host, settings.metrics_port)
    app = bootstrap(settings)
    asyncio.run(app.runtime.run_forever())


if __name__ == "__main__":
    main()

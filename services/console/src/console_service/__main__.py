"""``python -m console_service`` / ``inbox-console``: run the console edge (uvicorn)."""

from __future__ import annotations

import uvicorn
from inbox_kit.logging import configure_logging

from console_service.bootstrap import bootstrap
from console_service.settings import ConsoleSettings


def main() -> None:
    settings = ConsoleSettings()
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        bootstrap(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # the kit's JSON logging
        access_log=False,  # the live view polls every second; errors are still logged
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

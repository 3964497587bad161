"""``python -m replies_service`` / ``inbox-replies``: run the replies service."""

from __future__ import annotations

import gc

from inbox_kit.logging import configure_logging
from inbox_kit.metrics import start_metrics_server
from inbox_kit.process import run_service

from replies_service.bootstrap import bootstrap
from replies_service.settings import RepliesSettings


async def serve(settings: RepliesSettings) -> None:
    # built inside the running loop: grpc.aio binds its server to the loop current at creation
    app = bootstrap(settings)
    await app.runtime.run_forever()


def main() -> None:
    # searches allocate many short-lived objects: collect the young generation less often
    # (each young collection is cheap; the search index itself is frozen, see SearchIndex)
    gc.set_threshold(10_000, 20, 20)
    settings = RepliesSettings()
    configure_logging(settings.service_name, settings.log_level)
    start_metrics_server(settings.grpc_host, settings.metrics_port)
    run_service(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()

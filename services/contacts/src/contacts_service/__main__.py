"""``python -m contacts_service`` / ``inbox-contacts``: run the contacts service."""

from __future__ import annotations

from inbox_kit.logging import configure_logging
from inbox_kit.metrics import start_metrics_server
from inbox_kit.process import run_service

from contacts_service.bootstrap import bootstrap
from contacts_service.settings import ContactsSettings


def main() -> None:
    settings = ContactsSettings()
    configure_logging("contacts", settings.log_level)
    if settings.metrics_port:
        start_metrics_server(settings.grpc_host, settings.metrics_port)
    run_service(settings, lambda: _serve(settings))


async def _serve(settings: ContactsSettings) -> None:
    # Built inside the running loop: grpc.aio servers bind to the loop that creates them.
    await bootstrap(settings).runtime.run_forever()


if __name__ == "__main__":
    main()

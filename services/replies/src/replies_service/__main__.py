"""``python -m replies_service`` / ``inbox-replies``: run the replies service."""

from __future__ import annotations

from inbox_kit.service import serve_main

from replies_service.bootstrap import bootstrap
from replies_service.settings import RepliesSettings


def main() -> None:
    settings = RepliesSettings()
    serve_main(settings.service_name, settings, bootstrap)


if __name__ == "__main__":
    main()

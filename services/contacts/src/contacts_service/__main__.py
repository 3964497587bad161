"""``python -m contacts_service`` / ``inbox-contacts``: run the contacts service."""

from __future__ import annotations

from inbox_kit.service import serve_main

from contacts_service.bootstrap import bootstrap
from contacts_service.settings import ContactsSettings


def main() -> None:
    serve_main("contacts", ContactsSettings(), bootstrap)


if __name__ == "__main__":
    main()

"""docs/configuration.md and .env.example are generated from the settings classes: in sync."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location(
        "settings_docs", ROOT / "tools" / "settings_docs.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["settings_docs"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_configuration_table_is_up_to_date() -> None:
    tool = _tool()
    assert (ROOT / "docs" / "configuration.md").read_text() == tool.build_markdown(), (
        "run `make settings-docs`"
    )
    assert (ROOT / ".env.example").read_text() == tool.build_env_example(), (
        "run `make settings-docs`"
    )


def test_every_setting_of_every_service_is_documented() -> None:
    tool = _tool()
    classes = tool.settings_classes()
    assert {service for service, _ in classes} >= {"presence", "routing", "contacts", "replies"}
    undocumented = [
        f"{cls.__name__}: {', '.join(s.variables)}"
        for _, cls in classes
        for s in tool.describe(cls)
        if not s.description
    ]
    assert not undocumented, f"give these settings a Field(description=...): {undocumented}"


def test_the_table_names_the_variables_the_services_read() -> None:
    from presence_service.settings import PresenceSettings

    text = (ROOT / "docs" / "configuration.md").read_text()
    assert "`PRESENCE_SESSION_TIMEOUT_SECONDS` | float (>0) | `45.0` |" in text
    assert PresenceSettings.model_config.get("env_prefix") == "PRESENCE_"

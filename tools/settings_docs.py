"""Write docs/configuration.md and .env.example from the services' settings classes.

Usage: ``python tools/settings_docs.py`` (= ``make settings-docs``). A test keeps both files in
sync with the code: every field of every ``pydantic_settings.BaseSettings`` class in
``services/<svc>/src/<svc>_service/settings.py`` is one environment variable.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"
CONSTRAINTS = ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern")

HEADER = """\
# Configuration

Every setting of every service is an environment variable, read at start by the service's
settings class (pydantic-settings; unknown variables are ignored). This file and
[`.env.example`](../.env.example) are **generated** from those classes by
`tools/settings_docs.py` (`make settings-docs`); a test fails when they are stale.

Variables of the local tooling are documented where they are used: `make run` / `inbox-run`
(`INBOX_PORT_OFFSET`, `INBOX_JWT_SECRET`, `INBOX_RUN_*`: [operations.md](operations.md)),
the devstack (`DEVSTACK_*`: [libs/devstack](../libs/devstack/README.md)), the test session
(`KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URI`, `INBOX_TEST_INFRA`, `INBOX_KEEP_STACK`:
[README](../README.md#tests)). Token claims and JWKS settings: [authorization.md](authorization.md).
Tracing is configured by the standard OpenTelemetry variables (`OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, …), the same for
every service and not prefixed; nothing is exported when they are unset:
[tracing.md](tracing.md).
"""


@dataclass(frozen=True)
class Setting:
    variables: tuple[str, ...]
    type: str
    default: str
    description: str


def settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    """(service, class) for every settings class of every service, in name order."""
    found = []
    for service_dir in sorted((ROOT / "services").iterdir()):
        module_name = f"{service_dir.name}_service.settings"
        if not (service_dir / "src" / f"{service_dir.name}_service" / "settings.py").exists():
            continue
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseSettings) and cls.__module__ == module_name:
                found.append((service_dir.name, cls))
    return found


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if inspect.isclass(annotation) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if annotation is SecretStr:
        return "secret"
    if inspect.isclass(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(development secret)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for name in CONSTRAINTS:
            value = getattr(item, name, None)
            if value is not None:
                symbol = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}.get(name, name + " ")
                parts.append(f"{symbol}{value}")
    return ", ".join(parts)


def _description(cls: type[BaseSettings], name: str) -> str:
    """The field's description, or the one of the class it overrides (e.g. a port default)."""
    for klass in cls.__mro__:
        fields: dict[str, FieldInfo] = getattr(klass, "__pydantic_fields__", {})
        if name in fields and fields[name].description:
            return str(fields[name].description)
    return ""


def _variables(cls: type[BaseSettings], name: str, field: FieldInfo) -> tuple[str, ...]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        choices = [c for c in alias.choices if isinstance(c, str)]
        return tuple((prefix + c if c == name else c).upper() for c in choices)
    if isinstance(alias, str):
        return (alias.upper(),)
    return ((prefix + name).upper(),)


def describe(cls: type[BaseSettings]) -> list[Setting]:
    settings = []
    for name, field in cls.model_fields.items():
        constraints = _constraints(field)
        kind = _type_name(field.annotation)
        settings.append(
            Setting(
                variables=_variables(cls, name, field),
                type=f"{kind} ({constraints})" if constraints else kind,
                default=_default(field),
                description=_description(cls, name),
            )
        )
    return settings


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def build_markdown() -> str:
    lines = [HEADER]
    for service, cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        lines += [
            f"## {service} (`{prefix}*`, `{cls.__module__}.{cls.__name__}`)",
            "",
            "| variable | type | default | what it does |",
            "|---|---|---|---|",
        ]
        for s in describe(cls):
            variables = " or ".join(f"`{v}`" for v in s.variables)
            default = f"`{_cell(s.default)}`" if s.default != "" else '`""`'
            lines.append(f"| {variables} | {_cell(s.type)} | {default} | {_cell(s.description)} |")
        lines.append("")
    return "\n".join(lines)


def build_env_example() -> str:
    lines = [
        "# Every setting of every service with its default (generated by tools/settings_docs.py;",
        "# meanings: docs/configuration.md). Copy to .env and uncomment what you change:",
        "# docker compose reads .env for INBOX_JWT_SECRET / INBOX_LOG_LEVEL; for `make run` or a",
        "# service process, export the variables (e.g. `set -a; . ./.env; set +a`).",
        "",
        "# docker compose: one HS256 secret for every service (and inboxctl)",
        "# INBOX_JWT_SECRET=change-me-to-32-random-bytes",
        "# INBOX_LOG_LEVEL=INFO",
        "",
        "# tracing, every service (docs/tracing.md); unset: nothing is exported",
        "# OTEL_TRACES_EXPORTER=otlp",
        "# OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317",
        "# OTEL_TRACES_SAMPLER=parentbased_always_on",
    ]
    for service, cls in settings_classes():
        lines += ["", f"# --- {service} ---"]
        for s in describe(cls):
            if s.type == "secret":
                lines.append(f"# {s.variables[0]}=")
            else:
                lines.append(f"# {s.variables[0]}={s.default}")
    return "\n".join(lines) + "\n"


def main() -> int:
    DOC.write_text(build_markdown())
    ENV_EXAMPLE.write_text(build_env_example())
    print(f"wrote {DOC.relative_to(ROOT)} and {ENV_EXAMPLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

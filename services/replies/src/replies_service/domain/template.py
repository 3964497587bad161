"""Reply templates: ``Hi {{contact.first_name | fallback: "there"}}, I am {{agent.name}}``.

Grammar (whitespace inside the braces is free)::

    placeholder := "{{" path [ "|" "fallback" ":" string ] "}}"
    path        := "contact." key | "agent.name" | "agent.id"
    key         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}
    string      := '"' ( any char but '"' and '\\' | '\\"' | '\\\\' )* '"'

Text outside placeholders is literal; a lone ``}}`` is literal too. ``{{`` without a closing
``}}``, any other namespace, filter or syntax is rejected when the reply is saved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from inbox_kit.errors import InvalidArgument

NAMESPACES = ("contact", "agent")
AGENT_KEYS = ("name", "id")
_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_PATH_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.([^\s|}]*)\s*")
_FALLBACK_RE = re.compile(r"\s*fallback\s*:\s*")
_STRING_RE = re.compile(r'"((?:[^"\\]|\\["\\])*)"\s*')
FALLBACK_MAX = 200


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Placeholder:
    namespace: str
    key: str
    fallback: str | None

    @property
    def path(self) -> str:
        return f"{self.namespace}.{self.key}"


Part = str | Placeholder


def parse(template: str) -> list[Part]:
    """Split a template into literal text and placeholders; raise TemplateError if invalid."""
    parts: list[Part] = []
    pos = 0
    while True:
        start = template.find("{{", pos)
        if start < 0:
            if pos < len(template):
                parts.append(template[pos:])
            return parts
        if start > pos:
            parts.append(template[pos:start])
        end = template.find("}}", start + 2)
        if end < 0:
            raise TemplateError(f"unclosed '{{{{' at position {start}")
        inner = template[start + 2 : end]
        if "{{" in inner:
            raise TemplateError(f"unclosed '{{{{' at position {start}")
        parts.append(_placeholder(inner, start))
        pos = end + 2


def _placeholder(inner: str, at: int) -> Placeholder:
    path_text, bar, filter_text = inner.partition("|")
    match = _PATH_RE.fullmatch(path_text)
    if match is None:
        raise TemplateError(
            f"placeholder at position {at} must look like {{{{contact.<key>}}}} or "
            f"{{{{agent.name}}}}, got {{{{{inner}}}}}"
        )
    namespace, key = match.group(1), match.group(2)
    if namespace not in NAMESPACES:
        raise TemplateError(
            f"unknown namespace {namespace!r} at position {at} (use one of {', '.join(NAMESPACES)})"
        )
    if namespace == "agent" and key not in AGENT_KEYS:
        raise TemplateError(f"unknown agent field {key!r} at position {at} (use agent.name)")
    if not _KEY_RE.fullmatch(key):
        raise TemplateError(f"invalid key {key!r} at position {at}")
    fallback: str | None = None
    if bar:
        fb = _FALLBACK_RE.match(filter_text)
        if fb is None:
            raise TemplateError(
                f'unknown filter at position {at}: only | fallback: "text" is supported'
            )
        string = _STRING_RE.fullmatch(filter_text, fb.end())
        if string is None:
            raise TemplateError(
                f"bad fallback at position {at}: expected a double-quoted string, e.g. "
                f'fallback: "there"'
            )
        fallback = re.sub(r"\\([\"\\])", r"\1", string.group(1))
        if len(fallback) > FALLBACK_MAX:
            raise TemplateError(f"fallback at position {at} is longer than {FALLBACK_MAX} chars")
    return Placeholder(namespace, key, fallback)


def validate(template: str, field_name: str = "body") -> list[Part]:
    try:
        return parse(template)
    except TemplateError as exc:
        raise InvalidArgument(field_name, str(exc)) from exc


@dataclass(frozen=True)
class Rendered:
    text: str
    missing: tuple[str, ...]
    fallbacks: tuple[str, ...]


def contact_values(attributes: Mapping[str, str]) -> dict[str, str]:
    """Values a template can read from a contact; adds the derived ``first_name``.

    ``first_name`` is the ``first_name`` attribute when present, else the first word of the
    ``name`` attribute.
    """
    values = {k: v for k, v in attributes.items() if v.strip()}
    if "first_name" not in values:
        words = values.get("name", "").split()
        if words:
            values["first_name"] = words[0]
    return values


def render(parts: list[Part], *, contact: Mapping[str, str], agent: Mapping[str, str]) -> Rendered:
    """Fill placeholders. Missing value: the fallback if any, else empty (and reported)."""
    out: list[str] = []
    missing: dict[str, None] = {}
    fallbacks: dict[str, None] = {}
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        source = contact if part.namespace == "contact" else agent
        value = source.get(part.key, "")
        if value:
            out.append(value)
        elif part.fallback is not None:
            out.append(part.fallback)
            fallbacks[part.path] = None
        else:
            missing[part.path] = None
    return Rendered("".join(out), tuple(missing), tuple(fallbacks))

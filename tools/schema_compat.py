"""Breaking changes between two JSON Schemas of one event payload (pydantic's output).

Within ``v1`` a payload may only grow: ``breaking_changes(old, new)`` lists what would break a
consumer or a producer coded against ``old``, walking nested objects (``$defs``), arrays and
unions: a removed field, a changed type or format, a new required field, a removed enum value
or a changed const. Adding optional fields, enum values or event types is allowed.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _resolve(node: Schema, root: Schema) -> Schema:
    seen = 0
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        merged = {k: v for k, v in node.items() if k != "$ref"}
        node = {**root.get("$defs", {})[name], **merged}
        seen += 1
        if seen > 32:
            raise ValueError(f"reference cycle at {name}")
    return node


def _shape(node: Schema) -> dict[str, Any]:
    return {k: node[k] for k in ("type", "format") if k in node}


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every breaking difference from ``old`` to ``new`` (empty when compatible)."""
    problems: list[str] = []
    _compare(old, old, new, new, "", problems, depth=0)
    return problems


def _compare(
    old_root: Schema,
    old: Schema,
    new_root: Schema,
    new: Schema,
    path: str,
    problems: list[str],
    depth: int,
) -> None:
    if depth > 32:
        return
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    where = path or "(root)"
    if _shape(old) != _shape(new):
        problems.append(f"{where}: type changed from {_shape(old)} to {_shape(new)}")
        return
    if "const" in old and old.get("const") != new.get("const"):
        problems.append(f"{where}: const changed from {old['const']!r} to {new.get('const')!r}")
    if "enum" in old:
        still_allowed: list[Any] = new["enum"] if "enum" in new else old["enum"]
        removed = [v for v in old["enum"] if v not in still_allowed]
        if removed:
            problems.append(f"{where}: enum values removed: {removed}")
    elif "enum" in new:
        problems.append(f"{where}: now restricted to the values {new['enum']}")
    if "anyOf" in old or "anyOf" in new:
        old_options, new_options = old.get("anyOf", [old]), new.get("anyOf", [new])
        if len(old_options) != len(new_options):
            problems.append(f"{where}: union changed ({len(old_options)} -> {len(new_options)})")
            return
        for index, (o, n) in enumerate(zip(old_options, new_options, strict=True)):
            _compare(old_root, o, new_root, n, f"{path}|{index}", problems, depth + 1)
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, prop in old_props.items():
        child = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"{child}: field removed")
            continue
        _compare(old_root, prop, new_root, new_props[name], child, problems, depth + 1)
    added_required = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    if added_required:
        problems.append(f"{where}: new required fields {added_required}")
    for keyword in ("items", "additionalProperties"):
        if isinstance(old.get(keyword), dict) and isinstance(new.get(keyword), dict):
            child = f"{path}[{keyword}]"
            _compare(old_root, old[keyword], new_root, new[keyword], child, problems, depth + 1)

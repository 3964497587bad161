"""How automatic-assignment settings maps are stored: ``[{id, value}]``, old shape still read."""

from __future__ import annotations

from routing_service.adapters.dispatch_store import (
    from_id_values,
    settings_doc,
    settings_from,
)
from routing_service.domain.dispatch import AssignmentSettings


def test_maps_are_stored_as_id_value_lists_so_any_id_is_a_value_not_a_field_name() -> None:
    settings = AssignmentSettings(True, 3, {"$t.2": 2, "t1": 5}, {"fb.page": "$t.2"})
    doc = settings_doc(settings)
    assert doc["team_capacity"] == [{"id": "$t.2", "value": 2}, {"id": "t1", "value": 5}]
    assert doc["channel_teams"] == [{"id": "fb.page", "value": "$t.2"}]
    assert settings_from(doc) == settings


def test_the_earlier_shape_a_document_keyed_by_id_is_still_read() -> None:
    old = {"enabled": True, "default_capacity": None, "team_capacity": {"t1": 2}}
    assert settings_from(old) == AssignmentSettings(True, None, {"t1": 2}, {})
    assert from_id_values(None) == {} and from_id_values({"a": 1}) == {"a": 1}

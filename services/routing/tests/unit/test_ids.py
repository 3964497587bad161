"""name_based_id is uuid5's text exactly (ids are published and replayed: they must not
change with the implementation)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from routing_service.domain.dispatch import PROPOSAL_NAMESPACE
from routing_service.domain.ids import name_based_id
from routing_service.service_layer.auto_assign import CHANGE_NAMESPACE


@given(
    name=st.text(st.characters(exclude_categories=("Cs",)), max_size=300),
    namespace=st.sampled_from([PROPOSAL_NAMESPACE, CHANGE_NAMESPACE, uuid.NAMESPACE_URL]),
)
def test_name_based_id_is_uuid5(name: str, namespace: uuid.UUID) -> None:
    assert name_based_id(namespace, name) == str(uuid.uuid5(namespace, name))

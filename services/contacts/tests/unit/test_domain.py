from datetime import UTC, datetime, timedelta

import pytest
from contacts_service.domain.attributes import (
    BUILT_INS,
    AttributeDefinition,
    AttributeType,
    Definitions,
    InvalidValue,
    display,
    validate_value,
)
from contacts_service.domain.contact import Contact, Identity, validate_change
from inbox_kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def defs() -> Definitions:
    return Definitions.initial("org").create(
        AttributeDefinition("tier", "Tier", AttributeType.LIST, options=("gold", "silver"))
    )


def test_every_org_starts_with_the_built_ins_enabled() -> None:
    initial = Definitions.initial("org")
    assert initial.version == 0
    assert initial.keys == [
        "name",
        "phone",
        "email",
        "account_number",
        "language",
        "membership",
    ]
    assert all(d.enabled and d.built_in for d in initial.items)


def test_create_goes_to_the_end_and_bumps_the_version() -> None:
    d = defs()
    assert d.version == 1
    assert d.keys[-1] == "tier"
    with pytest.raises(AlreadyExists):
        d.create(AttributeDefinition("email", "E", AttributeType.TEXT))


def test_update_delete_reorder() -> None:
    d = defs().update("tier", label="Level", enabled=False, options=["a", "b"])
    tier = d.get("tier")
    assert tier is not None
    assert (tier.label, tier.enabled, tier.options) == ("Level", False, ("a", "b"))
    with pytest.raises(InvalidArgument) as exc:
        d.update("name", options=["x"])
    assert exc.value.field == "options"
    with pytest.raises(FailedPrecondition):
        d.delete("email")
    with pytest.raises(NotFound):
        d.delete("nope")
    assert "tier" not in d.delete("tier").keys
    new_order = list(reversed(d.keys))
    assert d.reorder(new_order).keys == new_order
    with pytest.raises(InvalidArgument, match="missing"):
        d.reorder(new_order[1:])
    with pytest.raises(InvalidArgument, match="exactly once"):
        d.reorder([*new_order, new_order[0]])


@pytest.mark.parametrize(
    ("type_", "raw", "stored"),
    [
        (AttributeType.TEXT, " Maria ", "Maria"),
        (AttributeType.NUMBER, 42, 42.0),
        (AttributeType.NUMBER, 1.5, 1.5),
        (AttributeType.EMAIL, "maria@example.com", "maria@example.com"),
        (AttributeType.PHONE, "+49 170 1234567", "+49 170 1234567"),
        (AttributeType.URL, "https://example.com/x", "https://example.com/x"),
        (AttributeType.DATE, "2026-02-28", "2026-02-28"),
        (AttributeType.BOOLEAN, True, True),
        (AttributeType.LIST, "gold", "gold"),
    ],
)
def test_valid_values(type_: AttributeType, raw: object, stored: object) -> None:
    definition = AttributeDefinition("k", "K", type_, options=("gold",))
    assert validate_value(definition, raw) == stored


@pytest.mark.parametrize(
    ("type_", "raw"),
    [
        (AttributeType.TEXT, 5),
        (AttributeType.TEXT, "  "),
        (AttributeType.NUMBER, "42"),
        (AttributeType.NUMBER, True),
        (AttributeType.NUMBER, float("nan")),
        (AttributeType.EMAIL, "not-an-email"),
        (AttributeType.PHONE, "call me"),
        (AttributeType.URL, "ftp://example.com"),
        (AttributeType.URL, "example.com"),
        (AttributeType.DATE, "2026-02-30"),
        (AttributeType.DATE, "25.11.2026"),
        (AttributeType.BOOLEAN, "true"),
        (AttributeType.LIST, "platinum"),
    ],
)
def test_invalid_values(type_: AttributeType, raw: object) -> None:
    definition = AttributeDefinition("k", "K", type_, options=("gold",))
    with pytest.raises(InvalidValue, match=r"^k: "):
        validate_value(definition, raw)


def test_display() -> None:
    assert display(42.0) == "42"
    assert display(1.25) == "1.25"
    assert display(True) == "true"
    assert display("x") == "x"


def change(event_id: str, at: datetime, **values: object):  # type: ignore[no-untyped-def]
    return validate_change(
        defs(),
        org_id="org",
        contact_id="c1",
        event_id=event_id,
        occurred_at=at,
        attributes=values,
        identities=[("whatsapp", "+49170")],
    )


def test_unknown_attribute_is_refused() -> None:
    with pytest.raises(InvalidValue, match="nope: unknown attribute"):
        change("e1", T0, nope="x")


def test_last_writer_wins_per_attribute_by_event_time_in_any_order() -> None:
    newer = change("e2", T0 + timedelta(seconds=1), name="New", language="de")
    older = change("e1", T0, name="Old", email="a@b.co")
    clear = change("e3", T0 + timedelta(seconds=2), email=None)
    expected = {"name": "New", "language": "de"}
    for order in ([older, newer, clear], [clear, newer, older], [newer, clear, older, older]):
        contact, _ = Contact("org", "c1").apply_all(order)
        assert contact.values(defs()) == expected
        assert contact.identities == (Identity("whatsapp", "+49170"),)
        assert contact.updated_at == T0 + timedelta(seconds=2)


def test_reapplying_an_event_changes_nothing() -> None:
    first = change("e1", T0, name="A")
    contact, changed = Contact("org", "c1").apply(first)
    assert changed == {"name"}
    again, changed_again = contact.apply(first)
    assert changed_again == set()
    assert again == contact


def test_stored_value_of_another_type_is_hidden_after_key_is_recreated() -> None:
    contact, _ = Contact("org", "c1").apply(change("e1", T0, tier="gold"))
    recreated = defs().delete("tier").create(AttributeDefinition("tier", "T", AttributeType.NUMBER))
    assert contact.values(recreated) == {}


def test_builtins_constant_has_six_entries() -> None:
    assert len(BUILT_INS) == 6

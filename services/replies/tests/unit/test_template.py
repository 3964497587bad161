from __future__ import annotations

import pytest
from inbox_kit.errors import InvalidArgument
from replies_service.domain import template


def render(body: str, contact: dict[str, str], agent_name: str = "Ana") -> template.Rendered:
    return template.render(
        template.parse(body),
        contact=template.contact_values(contact),
        agent={"name": agent_name, "id": "agent-1"},
    )


def test_fallback_used_when_value_missing() -> None:
    out = render('Hi {{contact.first_name | fallback: "there"}}!', {})
    assert out.text == "Hi there!"
    assert out.fallbacks == ("contact.first_name",)
    assert out.missing == ()


def test_first_name_derived_from_name() -> None:
    out = render('Hi {{ contact.first_name|fallback:"there" }}', {"name": "Maria Muster"})
    assert out.text == "Hi Maria"
    assert out.fallbacks == ()


def test_first_name_attribute_wins_over_name() -> None:
    assert render("{{contact.first_name}}", {"name": "Maria M", "first_name": "Mia"}).text == "Mia"


def test_missing_without_fallback_renders_empty_and_is_reported() -> None:
    out = render("Plan: {{contact.plan}}. Agent {{agent.name}}", {"name": "X"})
    assert out.text == "Plan: . Agent Ana"
    assert out.missing == ("contact.plan",)


def test_escaped_quotes_in_fallback_and_literal_closing_braces() -> None:
    out = render(r'a }} b {{contact.x | fallback: "say \"hi\""}}', {})
    assert out.text == 'a }} b say "hi"'


@pytest.mark.parametrize(
    "body",
    [
        "Hi {{contact.first_name",
        "Hi {{user.name}}",
        "Hi {{agent.email}}",
        "Hi {{contact.name | upper}}",
        "Hi {{contact.name | fallback: there}}",
        'Hi {{contact.name | fallback: "there}}',
        "Hi {{contact.}}",
        "Hi {{ }}",
        "Hi {{contact.a {{contact.b}}",
        "Hi {{contact.a b}}",
    ],
)
def test_invalid_templates_are_rejected_on_field_body(body: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        template.validate(body)
    assert exc.value.field == "body"

"""tunelab.prompting.template: ``prompt.template`` fills a row's fields; a bad placeholder is one clear error."""

from __future__ import annotations

import pytest

from tunelab.errors import UserError
from tunelab.prompting.template import fill_template, template_fields

ROW = {"text": "the food was great", "label": "positive", "stars": 5, "note": None}


def test_fields_are_put_in_place():
    assert fill_template("Review: {text}\nAnswer:", ROW) == "Review: the food was great\nAnswer:"


def test_a_field_may_appear_twice_and_fields_are_listed_in_order():
    template = "{label}: {text} ({label})"

    assert template_fields(template) == ["label", "text", "label"]
    assert fill_template(template, ROW) == "positive: the food was great (positive)"


def test_doubled_braces_are_literal_braces():
    assert fill_template('{{"review": "{text}"}}', ROW) == '{"review": "the food was great"}'
    assert template_fields("{{not a field}}") == []


def test_numbers_become_text_and_null_becomes_empty():
    assert fill_template("{stars} stars{note}", ROW) == "5 stars"


def test_unknown_placeholder_names_it_and_the_fields_there_are():
    with pytest.raises(UserError) as error:
        fill_template("Review: {review}", ROW)

    message = str(error.value)
    assert "{review}" in message
    assert "fields: label, note, stars, text" in message


@pytest.mark.parametrize("template", ["Review: {}", "Review: {0}", "Review: {text.upper}", "Review: {text[0]}"])
def test_placeholders_must_name_a_field(template):
    # attribute and index access would let a template reach into Python objects
    with pytest.raises(UserError, match="must name a field"):
        fill_template(template, ROW)


@pytest.mark.parametrize("template", ["Review: {text", "Review: text}"])
def test_unbalanced_braces_say_how_to_write_literal_ones(template):
    with pytest.raises(UserError, match=r"prompt\.template: .*literal braces as \{\{ and \}\}"):
        fill_template(template, ROW)

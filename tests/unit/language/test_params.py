"""A template's parameter schema: closed, bounded, and checked on every run."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.errors import ParamsInvalid
from sandbox.language.params import parse_schema

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "year": {"type": "integer", "minimum": 2015, "maximum": 2030},
        "district": {"type": "string", "enum": ["城关区", "湖滨区"]},
        "top": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        "bands": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "maxItems": 10,
        },
    },
    "required": ["year"],
}


def test_valid_params_pass_with_defaults_filled() -> None:
    schema = parse_schema(SCHEMA)
    assert schema.check({"year": 2024, "district": "湖滨区"}) == {
        "year": 2024,
        "district": "湖滨区",
        "top": 5,
    }
    assert schema.names == ("year", "district", "top", "bands")
    assert schema.to_json()["additionalProperties"] is False


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"year": 2014}, "params.year: 2014 is less than the minimum of 2015"),
        ({"year": 2024, "district": "西城区"}, "params.district"),
        ({}, "'year' is a required property"),
        ({"year": 2024, "extra": 1}, "pass only the template's parameters"),
        ({"year": "2024"}, "params.year: '2024' is not of type 'integer'"),
        ({"year": 2024, "bands": list(range(11))}, "params.bands"),
        ({"year": 2024, "bands": [-1]}, "params.bands.0"),
    ],
)
def test_a_run_outside_the_schema_is_refused_saying_where(params: Any, says: str) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        parse_schema(SCHEMA).check(params)
    assert says in caught.value.message
    assert "year, district, top, bands" in caught.value.message


def test_no_schema_means_no_parameters() -> None:
    schema = parse_schema({})
    assert schema.check({}) == {}
    with pytest.raises(ParamsInvalid, match="pass only"):
        schema.check({"x": 1})


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("year", "must be an object"),
        ({"type": "array"}, 'top "type" must be "object"'),
        ({"properties": {}, "additionalProperties": True}, "additionalProperties must be false"),
        ({"$ref": "http://x"}, "'$ref' is not allowed"),
        ({"properties": {"d": {"type": "string"}}}, "needs its allowed values"),
        ({"properties": {"d": {"type": "string", "maxLength": 10**6}}}, "maxLength"),
        ({"properties": {"d": {"type": "object"}}}, "type must be one of"),
        ({"properties": {"d": {"type": "integer", "$ref": "#"}}}, "'$ref' is not allowed"),
        ({"properties": {"a": {"type": "array", "items": {"type": "integer"}}}}, "maxItems"),
        (
            {"properties": {"a": {"type": "array", "maxItems": 2, "items": {"type": "array"}}}},
            "type must be one of",
        ),
        ({"properties": {}, "required": ["y"]}, "not among its properties"),
        ({"properties": {"y": {"type": "integer", "minimum": "a"}}}, "not a valid JSON Schema"),
        ({"properties": {"y": {"type": "integer", "maximum": 3, "default": 9}}}, "default"),
    ],
)
def test_a_schema_reviewers_could_not_rely_on_is_refused(raw: Any, says: str) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        parse_schema(raw)
    assert says in caught.value.message

"""The parameters a template accepts: a small, closed JSON Schema its reviewers can read.

A template is reviewed once and then run with many parameters, so the schema is part of what
the departments approve: every parameter has a type and bounds (a range, a list of allowed
values, a length), nothing else may be passed, and no keyword may fetch anything from
elsewhere (`$ref`, `$dynamicRef`). Runs are checked with the `jsonschema` library.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from sandbox.errors import ParamsInvalid

TYPES = ("integer", "number", "string", "boolean", "array")
# What a parameter may say about itself; anything else is refused so the schema stays
# readable and closed.
_KEYWORDS = frozenset(
    {
        "type",
        "title",
        "description",
        "default",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
    }
)
_TOP = frozenset({"type", "title", "description", "properties", "required", "additionalProperties"})
MAX_PARAMETERS = 64
MAX_STRING = 1000
_EXAMPLE = (
    '{"type": "object", "properties": {"year": {"type": "integer", "minimum": 2015, '
    '"maximum": 2030}, "district": {"type": "string", "enum": ["城关区", "湖滨区"]}}, '
    '"required": ["year"]}'
)


@dataclass(frozen=True)
class ParamsSchema:
    """A template's parameter schema, checked; `to_json` is what reviewers approve."""

    body: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.body))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.body.get("properties", {}))

    def check(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters a run passes, with the schema's defaults filled in; refuses any
        parameter outside the schema, saying which one and why."""
        if not isinstance(params, Mapping):
            raise ParamsInvalid("params must be an object of parameter names to values")
        filled = dict(params)
        for name, prop in self.body.get("properties", {}).items():
            if name not in filled and "default" in prop:
                filled[name] = copy.deepcopy(prop["default"])
        errors = sorted(
            Draft202012Validator(dict(self.body)).iter_errors(filled),
            key=lambda e: [str(p) for p in e.absolute_path],
        )
        if errors:
            raise ParamsInvalid(_describe(errors[0]) + f" ({_allowed(self)})")
        return filled


def parse_schema(raw: Any) -> ParamsSchema:
    """Check a template's parameter schema; an empty object means "no parameters"."""
    if raw is None or raw == {}:
        raw = {"type": "object", "properties": {}}
    if not isinstance(raw, Mapping):
        raise ParamsInvalid(f"params_schema must be an object such as {_EXAMPLE}")
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise ParamsInvalid(
            f"params_schema: {unknown[0]!r} is not allowed at the top; use type, properties, "
            f"required (and title, description), e.g. {_EXAMPLE}"
        )
    if raw.get("type", "object") != "object":
        raise ParamsInvalid('params_schema: the top "type" must be "object"')
    if raw.get("additionalProperties", False) is not False:
        raise ParamsInvalid(
            "params_schema: additionalProperties must be false (or left out): a run may "
            "pass only the parameters the departments reviewed"
        )
    properties = raw.get("properties", {})
    if not isinstance(properties, Mapping):
        raise ParamsInvalid("params_schema.properties must be an object of parameter schemas")
    if len(properties) > MAX_PARAMETERS:
        raise ParamsInvalid(f"params_schema declares more than {MAX_PARAMETERS} parameters")
    for name, prop in properties.items():
        _check_property(f"params_schema.properties.{name}", prop)
    required = raw.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ParamsInvalid("params_schema.required must be a list of parameter names")
    missing = [r for r in required if r not in properties]
    if missing:
        raise ParamsInvalid(
            f"params_schema.required names {missing[0]!r}, which is not among its properties"
        )
    body = {
        **{k: raw[k] for k in ("title", "description") if k in raw},
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }
    try:
        Draft202012Validator.check_schema(body)
    except SchemaError as e:
        raise ParamsInvalid(f"params_schema is not a valid JSON Schema: {e.message}") from None
    for name, prop in properties.items():
        if "default" in prop:
            errors = list(Draft202012Validator(prop).iter_errors(prop["default"]))
            if errors:
                raise ParamsInvalid(
                    f"params_schema.properties.{name}.default does not meet its own schema: "
                    f"{errors[0].message}"
                )
    # Stored and approved as JSON: anything that does not round-trip is refused here.
    return ParamsSchema(json.loads(json.dumps(body, ensure_ascii=False)))


def _check_property(where: str, prop: Any, depth: int = 0) -> None:
    if not isinstance(prop, Mapping):
        raise ParamsInvalid(f'{where} must be an object such as {{"type": "integer"}}')
    unknown = sorted(set(prop) - _KEYWORDS)
    if unknown:
        raise ParamsInvalid(
            f"{where}: keyword {unknown[0]!r} is not allowed; a parameter may use "
            f"{', '.join(sorted(_KEYWORDS))}"
        )
    kind = prop.get("type")
    if kind not in TYPES or (kind == "array" and depth > 0):
        allowed = TYPES if depth == 0 else TYPES[:-1]
        raise ParamsInvalid(f"{where}.type must be one of {', '.join(allowed)}")
    if kind == "string" and "enum" not in prop:
        limit = prop.get("maxLength")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit > MAX_STRING:
            raise ParamsInvalid(
                f"{where}: a string parameter needs its allowed values (enum) or a maxLength "
                f"of at most {MAX_STRING}, so reviewers know what it can hold"
            )
    if kind == "array":
        if not isinstance(prop.get("maxItems"), int) or "items" not in prop:
            raise ParamsInvalid(f"{where}: an array parameter needs items and maxItems")
        _check_property(f"{where}.items", prop["items"], depth + 1)


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        return f"params: {error.message}; pass only the template's parameters"
    if error.validator == "required":
        return f"params: {error.message}"
    return f"params.{path}: {error.message}" if path else f"params: {error.message}"


def _allowed(schema: ParamsSchema) -> str:
    names = ", ".join(schema.names) or "none"
    return f"the template's parameters: {names}"

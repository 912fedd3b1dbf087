"""What every route shares: the error envelope, the responses each route declares, the route
class that keeps bodies as they are, and the bases of the models."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

# Whole numbers must stay whole: a plain `float` field would turn 3 into 3.0.
Number = int | float


class Open(BaseModel):
    """A body whose known fields are typed; any others pass through as they are, because a
    response model drops every field it does not declare."""

    model_config = ConfigDict(extra="allow")


class ErrorEnvelope(BaseModel):
    """Every error, whatever its cause (validation included), in one shape."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "ok": False,
                "status": 403,
                "code": "contract_scope",
                "error": "column 'name' is not granted for group_by in contract c-12",
            }
        },
    )
    ok: Literal[False]
    status: int = Field(description="The HTTP status, repeated")
    code: str = Field(description="Stable machine-readable cause, e.g. contract_scope")
    error: str = Field(description="What went wrong and how to fix it")
    job_id: str | None = Field(None, description="A rejected submission: the job recorded")
    line: int | None = Field(None, description="A rejected submission: the line of the code")


_MEANING = {
    400: "The request is invalid (validation errors included): the message says what to fix",
    401: "No token, or a token that is unknown, revoked or expired",
    403: "The caller's role, status or contract does not allow this",
    404: "Nothing of that name is visible to the caller",
    409: "The request conflicts with the current state",
    429: "A quota, spending cap or privacy budget is used up",
    500: "The service hit an unexpected error; nothing was changed",
    502: "A data product's own analysis failed (its code raised or ran out of time, or "
    "reviewers refused its release); the call is not charged",
    503: "Ray is unreachable, or the ledger is inconsistent",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error envelope, declared for each of `statuses`."""
    return {
        status: {"model": ErrorEnvelope, "description": _MEANING[status]} for status in statuses
    }


# Declared on every router. `default` also covers what a route does not list, and keeps
# FastAPI from documenting a 422 the service never sends (validation errors are 400s).
ERRORS: dict[int | str, dict[str, Any]] = {
    **errors(400, 500),
    "default": {"model": ErrorEnvelope, "description": "Any other error, in the same envelope"},
}

# Routes that need a token.
SIGNED_IN = errors(401, 403)

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}


def files(*formats: str) -> dict[int | str, dict[str, Any]]:
    """The success response also offered as file downloads in `formats` (`?format=`)."""
    binary = {"type": "string", "format": "binary"}
    return {
        200: {
            "content": {MEDIA_TYPES[f]: {"schema": binary} for f in formats},
            "description": "JSON, or with `format=` the same data as a download",
        }
    }


class ModelRoute(APIRoute):
    """Serialises a response through its model without adding fields: a field left out of the
    returned data stays out, rather than appearing with its default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().__init__(*args, **kwargs)


class DomainChecked(BaseModel):
    """A request body that a domain package validates. Its fields document the shape and the
    schema marks `REQUIRED` ones, but nothing is checked here (each field is `SkipValidation`)
    so that a client keeps getting the domain's own error codes and messages."""

    model_config = ConfigDict(extra="allow")
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def as_sent(self) -> dict[str, Any]:
        """The body as the client sent it, unknown fields included for the domain to refuse."""
        sent = {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name in self.model_fields_set
        }
        return {**sent, **(self.model_extra or {})}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: cs.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler.resolve_ref_schema(handler(schema))
        for prop in json_schema.get("properties", {}).values():
            prop.pop("default", None)
        if cls.REQUIRED:
            json_schema["required"] = list(cls.REQUIRED)
        return json_schema

"""The one JSON error envelope, and the mapping of every error class to an HTTP status.

{"ok": false, "status": 403, "code": "contract_scope", "error": "…"}
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.errors import ProductCallFailed
from sandbox.pipeline.submission import RejectedJob
from sandbox.records.failures import DOMAIN_ERRORS, status_of


def envelope(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "status": status, "code": code, "error": message, **extra}, status_code=status
    )


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(RejectedJob)
    async def _rejected(_: Request, exc: RejectedJob) -> JSONResponse:
        cause = exc.cause
        return envelope(
            status_of(cause),
            exc.code,
            _message(cause),
            job_id=exc.job_id,
            line=getattr(cause, "line", None),
        )

    @app.exception_handler(ProductCallFailed)
    async def _call_failed(_: Request, exc: ProductCallFailed) -> JSONResponse:
        return envelope(exc.status, exc.code, exc.message, job_id=exc.call_id)

    for cls in DOMAIN_ERRORS:

        @app.exception_handler(cls)
        async def _domain(_: Request, exc: Exception) -> JSONResponse:
            return envelope(status_of(exc), getattr(exc, "code", "error"), _message(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return envelope(400, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return envelope(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return envelope(
            500,
            "internal_error",
            "the service hit an unexpected error; nothing "
            "was changed by this request. Tell the bureau if it keeps happening",
        )

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.catalog import Dataset, Datasets
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.errors import IngestError
from sandbox.records import registry

router = APIRouter(tags=["datasets"], route_class=ModelRoute, responses=ERRORS)


@router.post(
    "/datasets", status_code=201, response_model=Dataset, responses=SIGNED_IN | errors(409)
)
def create(
    file: Annotated[UploadFile, File()], meta: Annotated[str, Form()], ctx: Ctx, actor: CurrentActor
) -> dict[str, Any]:
    try:
        meta_json = json.loads(meta)
    except ValueError:
        raise IngestError(
            "meta must be a JSON object: {name, title, provider_id, level, columns}"
        ) from None
    info = registry.register(ctx, actor, file.file.read(), file.filename or "", meta_json)
    return info.to_json()


@router.get("/datasets", response_model=Datasets, responses=SIGNED_IN)
def list_all(ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    with ctx.reading() as s:
        return {"datasets": [d.to_json() for d in registry.all_datasets(ctx, s)]}


@router.get("/datasets/{name}", response_model=Dataset, responses=SIGNED_IN | errors(404))
def get_one(name: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    with ctx.reading() as s:
        return registry.get(ctx, s, name).to_json()

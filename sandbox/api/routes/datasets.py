from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.catalog import (
    Dataset,
    DatasetRefresh,
    DatasetRefreshes,
    Datasets,
    DatasetSource,
    DatasetVersion,
    DatasetVersionPublished,
    DatasetVersions,
    DummyCatalog,
    QualityRules,
)
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.catalog import dummy
from sandbox.common import exports
from sandbox.errors import IngestError
from sandbox.pipeline import dummies
from sandbox.records import refresh, registry, versions

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


@router.get(
    "/datasets/{name}/dummy",
    # A file, never JSON: the OpenAPI document lists only the file types.
    response_class=Response,
    responses=SIGNED_IN
    | errors(404)
    | {
        200: {
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in dummies.MEDIA_TYPES.values()
            },
            "description": "The generated table as a download",
        }
    },
)
def get_dummy(
    name: str,
    ctx: Ctx,
    actor: CurrentActor,
    rows: Annotated[int, Query(ge=0, le=dummy.MAX_ROWS)] = dummy.DEFAULT_ROWS,
    format: Literal["parquet", "csv", "xlsx"] = "parquet",
    seed: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Response:
    """Dummy data: a table with the dataset's columns, types and roles, generated from its
    published schema only (no real value, no real distribution), for checking that job code
    runs and is accepted. The Parquet file carries the catalog entry in its metadata, as
    `GET /v1/datasets/{name}/dummy/catalog` gives it."""
    data, media, filename = dummies.download(ctx, actor, name, rows, format, seed)
    return Response(data, media_type=media, headers=exports.attachment(filename))


@router.get(
    "/datasets/{name}/dummy/catalog",
    response_model=DummyCatalog,
    responses=SIGNED_IN | errors(404),
)
def get_dummy_catalog(name: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """What `sandbox dev run` needs next to the dummy table: the catalog entry and the
    disclosure rules in force (thresholds by level, dominance)."""
    return dummies.catalog(ctx, actor, name)


@router.post(
    "/datasets/{name}/versions",
    status_code=201,
    response_model=DatasetVersionPublished,
    responses=SIGNED_IN | errors(404, 409),
)
def publish_version(
    name: str,
    file: Annotated[UploadFile, File()],
    ctx: Ctx,
    actor: CurrentActor,
    meta: Annotated[str, Form()] = "{}",
) -> dict[str, Any]:
    """A new version of the dataset: `meta` = {"mode": "replace" | "append", "columns":
    {new column: policy}, "as_of": "YYYY-MM-DD" (the date the data describes)}. Jobs submitted from now on read it; jobs submitted before read
    the version they were submitted against."""
    try:
        meta_json = json.loads(meta)
    except ValueError:
        raise IngestError('meta must be a JSON object: {"mode": "replace" | "append"}') from None
    data = file.file.read()
    return versions.publish_upload(ctx, actor, name, data, file.filename or "", meta_json).to_json()


@router.get(
    "/datasets/{name}/versions", response_model=DatasetVersions, responses=SIGNED_IN | errors(404)
)
def list_versions(name: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Every version, newest first; quality only for the bureau and the owning department."""
    return {"versions": versions.view_history(ctx, actor, name)}


@router.get(
    "/datasets/{name}/versions/{number}",
    response_model=DatasetVersion,
    responses=SIGNED_IN | errors(404),
)
def get_version(name: str, number: int, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return versions.view_version(ctx, actor, name, number)


@router.put(
    "/datasets/{name}/quality-rules", response_model=QualityRules, responses=SIGNED_IN | errors(404)
)
def put_quality_rules(
    name: str, body: dict[str, Any], ctx: Ctx, actor: CurrentActor
) -> dict[str, Any]:
    """The constraints every later version is checked against, and whether a failure
    refuses the version or flags it (`on_failure`)."""
    return versions.set_rules(ctx, actor, name, body)


@router.put(
    "/datasets/{name}/source", response_model=DatasetSource, responses=SIGNED_IN | errors(404)
)
def put_source(name: str, body: dict[str, Any], ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Where the dataset is pulled from: a SQLAlchemy URL without its password, the password
    referenced (`env:NAME` or `file:/path`), a table or a query, replace or append, and an
    optional schedule ("daily 02:00 Asia/Shanghai")."""
    return refresh.set_source(ctx, actor, name, body)


@router.get(
    "/datasets/{name}/source", response_model=DatasetSource, responses=SIGNED_IN | errors(404)
)
def get_source(name: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return refresh.get_source(ctx, actor, name)


@router.post(
    "/datasets/{name}/refresh",
    status_code=202,
    response_model=DatasetRefresh,
    responses=SIGNED_IN | errors(404),
)
def start_refresh(name: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Pull the dataset from its source now, in the background: the pull's record as it
    starts; GET /v1/datasets/{name}/refreshes follows it."""
    return refresh.refresh_in_background(ctx, actor, name, "api")


@router.get(
    "/datasets/{name}/refreshes", response_model=DatasetRefreshes, responses=SIGNED_IN | errors(404)
)
def list_refreshes(name: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """The dataset's pulls, newest first, failures with their reason."""
    return {"refreshes": refresh.history(ctx, actor, name)}

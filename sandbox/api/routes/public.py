"""What the bureau publishes, readable without a token: the same records the console's
public pages show (sandbox.records.register), never anything private to an operator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx
from sandbox.api.models.common import ERRORS, ModelRoute, errors
from sandbox.api.models.ledger import Checkpoint
from sandbox.api.models.public import Fees, PublicDataset, PublicDatasets, Register
from sandbox.records import register

router = APIRouter(tags=["public"], route_class=ModelRoute, responses=ERRORS)


@router.get("/datasets", response_model=PublicDatasets)
def datasets(
    ctx: Ctx, q: str = "", department: str = "", level: str = "", topic: str = ""
) -> dict[str, Any]:
    """The catalog: `q` searches names, titles and descriptions; `department` is a provider
    id."""
    found = register.catalog(ctx, q, department, level, topic)
    return {
        "datasets": [
            register.public_dataset(d, found.departments[d.provider_id]) for d in found.datasets
        ]
    }


@router.get("/datasets/{name}", response_model=PublicDataset, responses=errors(404))
def dataset(name: str, ctx: Ctx) -> dict[str, Any]:
    """One dataset's data dictionary: its columns, roles and bounds, never a value."""
    return register.public_dataset(*register.dataset(ctx, name))


@router.get("/fees", response_model=Fees)
def fees(ctx: Ctx) -> dict[str, Any]:
    """The fee schedule in force and the caps it stays within."""
    return register.fees(ctx)


@router.get("/register", response_model=Register)
def public_register(ctx: Ctx) -> dict[str, Any]:
    """Contracts in force (operator, licence, datasets, purpose class, term) and the fees
    charged per month, in total."""
    return register.public_register(ctx)


@router.get("/checkpoint", response_model=Checkpoint, responses=errors(503))
def checkpoint(ctx: Ctx) -> dict[str, Any]:
    """The log's latest signed checkpoint (check it with `sandbox ledger verify
    --checkpoint`)."""
    return register.checkpoint(ctx)

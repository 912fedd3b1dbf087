"""`GET /metrics`: the service's counters in Prometheus text format, plus the levels read
from the database at each scrape. For the bureau and regulators (a scraper is given a bureau
or regulator token): how busy operators are is not for other operators to see."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from operators.roles import Role
from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute
from sandbox.common.metrics import exposition
from sandbox.context import Context
from sandbox.ledger import log
from sandbox.records.principals import require
from sandbox.store.models import Contract, PrivacyBudget

router = APIRouter(tags=["metrics"], route_class=ModelRoute, responses=ERRORS)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Levels(Collector):
    """Levels of one instance, read when scraped: a few aggregate queries, not history."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.ctx.reading() as s:
            fen = s.scalar(select(func.coalesce(func.sum(Contract.reserved_fen), 0))) or 0
            micro = s.scalar(select(func.coalesce(func.sum(PrivacyBudget.reserved_micro), 0)))
            size = log.size(s)
        yield GaugeMetricFamily(
            "sandbox_money_reserved_yuan", "Money held by jobs still queued or running.", fen / 100
        )
        yield GaugeMetricFamily(
            "sandbox_epsilon_reserved",
            "ε held by jobs still queued or running, all budgets.",
            (micro or 0) / 1_000_000,
        )
        yield GaugeMetricFamily(
            "sandbox_ledger_entries", "Entries in the tamper-evident log.", size
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        },
        **SIGNED_IN,
    },
)
def metrics(ctx: Ctx, actor: CurrentActor) -> Response:
    """Jobs by status and error code, seconds per stage, cells suppressed by rule, money and ε
    held by running jobs, the log's size. Bureau and regulators."""
    require(actor, Role.bureau, Role.regulator)
    body = exposition() + generate_latest(_levels(ctx))
    return Response(body, media_type=CONTENT_TYPE)


def _levels(ctx: Context) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Levels(ctx))
    return registry

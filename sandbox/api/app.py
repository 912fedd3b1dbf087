"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sandbox.api import errors, metrics
from sandbox.api.request_ids import RequestIds
from sandbox.api.routes import (
    contracts,
    datasets,
    demands,
    flags,
    health,
    jobs,
    ledger,
    objections,
    prices,
    principals,
    products,
    public,
    reports,
    reviews,
    statistics,
    templates,
)
from sandbox.console import web as console
from sandbox.context import Context, open_instance
from sandbox.pipeline.execution import report_jail_filter, runner
from sandbox.pipeline.settlement import keep_recovering, recover_interrupted
from sandbox.records import agreements, refresh, releases
from sandbox.settings import Settings


def create_app(settings: Settings | None = None, context: Context | None = None) -> FastAPI:
    settings = settings or (context.settings if context else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = context or open_instance(settings)
        recover_interrupted(ctx)
        report_jail_filter(settings)
        agreements.expire_due(ctx)
        runner(ctx)  # where jobs run, decided (and Ray started) before the first request
        releases.gate(ctx)  # and the release gate's process started
        app.state.ctx = ctx
        stop = threading.Event()
        sweeper = threading.Thread(
            target=keep_recovering, args=(ctx, stop), name="recovery", daemon=True
        )
        sweeper.start()
        puller = threading.Thread(
            target=refresh.keep_pulling, args=(ctx, stop), name="pulls", daemon=True
        )
        puller.start()
        yield
        stop.set()
        sweeper.join()
        # A pull under way may take minutes: it is not waited for (nothing of it is kept
        # unless it finishes).
        puller.join(timeout=1)
        if context is None:
            ctx.close()

    app = FastAPI(
        title="Public Data Sandbox",
        version="1",
        lifespan=lifespan,
        description="Analyse public data without seeing it: disclosure-controlled "
        "aggregates under signed contracts and published prices.",
    )
    errors.install(app)
    routers = (health, principals, datasets, prices, contracts, jobs, ledger, reports, flags)
    for module in (*routers, statistics):
        app.include_router(module.router, prefix="/v1")
    for module in (demands, objections, reviews):
        app.include_router(module.router, prefix="/v1")
    app.include_router(products.router, prefix="/v1")
    app.include_router(templates.router, prefix="/v1")
    app.include_router(public.router, prefix="/v1/public")
    app.include_router(products.public_router, prefix="/v1/public")
    app.include_router(metrics.router)
    console.install(app)
    # Outermost (added last): every line of the request, the access line too, carries its id.
    app.add_middleware(RequestIds)
    return app


def worker_app() -> FastAPI:
    """The app of one of several worker processes (`sandbox serve --workers N`): settings and
    logging from the environment its parent set."""
    from sandbox.common import logs

    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    return create_app(settings)

"""The console's pages, one module per kind of visitor."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.console.pages import (
    account,
    bureau,
    datasets,
    demands,
    operator,
    products,
    provider,
    public,
    regulator,
    reviews,
    statistics,
    templates,
)

PAGES: tuple[APIRouter, ...] = (
    public.router,
    account.router,
    operator.router,
    provider.router,
    bureau.router,
    regulator.router,
    datasets.router,
    statistics.router,
    demands.router,
    reviews.router,
    products.router,
    templates.router,
)

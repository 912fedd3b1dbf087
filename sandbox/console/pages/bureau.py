"""The bureau's pages."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.console.routing import ConsoleRoute

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

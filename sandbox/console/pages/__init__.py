"""The console's pages, one module per kind of visitor."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.console.pages import account, public

PAGES: tuple[APIRouter, ...] = (public.router, account.router)

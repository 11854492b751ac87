"""Starlette routes of the per-CPO OCPI platforms (mounted by app.web)."""

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []

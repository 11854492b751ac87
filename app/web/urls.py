"""Absolute and relative URLs the API hands out (one place, so OCPI and control plane agree)."""

from __future__ import annotations

from starlette.requests import Request


def base_url(request: Request) -> str:
    configured = request.app.state.settings.public_base_url
    return configured or str(request.base_url).rstrip("/")


def ocpi_root(request: Request, cpo_id: int) -> str:
    """Root of one CPO's OCPI platform; the versions endpoint sits right under it."""
    return f"{base_url(request)}/ocpi/peer/{cpo_id}"


def ocpi_versions_url(request: Request, cpo_id: int) -> str:
    return f"{ocpi_root(request, cpo_id)}/versions"


def status_url(cpo_id: int) -> str:
    return f"/ocpi/cpos/{cpo_id}/status"


def cpo_url(cpo_id: int) -> str:
    return f"/ocpi/cpos/{cpo_id}"


def report_url(cpo_id: int) -> str:
    return f"/ocpi/cpos/{cpo_id}/report"

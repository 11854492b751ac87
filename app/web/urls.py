"""Absolute and relative URLs the API hands out (one place, so OCPI and control plane agree)."""

from __future__ import annotations

import re

from starlette.requests import Request

# A Host header we may echo: a DNS name or IPv4 (letters, digits, dots, dashes) or a bracketed IPv6,
# with an optional port. Anything else (quotes, spaces, `$(…)`, `/`, `@`) is never reflected.
_HOST = re.compile(r"(?P<name>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?")


def base_url(request: Request) -> str:
    """`CPOLAB_PUBLIC_BASE_URL` when set; else the request's own host when it is a trusted one
    (`CPOLAB_TRUSTED_HOSTS`, `*` = any well-formed host); else the loopback address of this server.

    These URLs end up in `ocpi_peer_url`, the credentials the CPO sends to eMSPs and curl snippets
    users paste into a shell, so an arbitrary Host header must never reach them.
    """
    settings = request.app.state.settings
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    scheme = "https" if request.url.scheme == "https" else "http"
    host = request.headers.get("host", "")
    match = _HOST.fullmatch(host)
    if match:
        trusted = settings.trusted_host_set()
        if "*" in trusted or match["name"].lower() in trusted or host.lower() in trusted:
            return f"{scheme}://{host}"
    server = request.scope.get("server") or (None, None)
    port = server[1] if isinstance(server[1], int) else None
    return f"{scheme}://127.0.0.1" + (f":{port}" if port else "")


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

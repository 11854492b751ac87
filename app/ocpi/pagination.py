"""OCPI list pagination (spec §Pagination), shared by every sender list.

Request: `offset` (default 0), `limit` (default and cap = the module's max), `date_from` (inclusive)
and `date_to` (exclusive) on `last_updated`. Empty values (`?date_from=&limit=`, the spec's own URL
template) count as absent. Response: `X-Total-Count`, `X-Limit` (always the server max, even on a
short page) and `Link: <next>; rel="next"` only while more data follows, repeating every filter.

Bad parameters reached the OCPI layer (authenticated, existing route), so per transport §HTTP
status codes they answer HTTP 200 with OCPI status 2001 in the envelope, never an HTTP error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.ocpi.transport import OcpiError, OcpiResponse, ocpi_response, parse_ocpi_datetime
from app.web.urls import base_url

BAD_PARAMS_HTTP_STATUS = 200
_MAX_INT = 2**62  # offsets/limits are clamped here: SQL binds stay 64-bit integers


@dataclass(frozen=True)
class PageParams:
    offset: int
    limit: int  # already capped to the server max
    date_from: datetime | None  # aware UTC (SQLModel's UTCDateTime columns refuse naive values)
    date_to: datetime | None


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value.strip() if value is not None and value.strip() else None


def _int_param(request: Request, name: str, *, minimum: int) -> int | None:
    raw = _param(request, name)
    if raw is None:
        return None
    digits = raw.lstrip("0") or "0"
    # Absurdly large values are just "past the end" / "as many as allowed": clamp, don't fail.
    value = min(int(digits), _MAX_INT) if digits.isascii() and digits.isdigit() and len(digits) <= 19 else _MAX_INT
    if not (raw.isascii() and raw.isdigit()) or value < minimum:
        raise OcpiError(2001, f"{name} must be an integer >= {minimum}, got {raw[:40]!r}", BAD_PARAMS_HTTP_STATUS)
    return value


def _date_param(request: Request, name: str) -> datetime | None:
    raw = _param(request, name)
    if raw is None:
        return None
    try:
        value = parse_ocpi_datetime(raw)
    except ValueError:
        raise OcpiError(
            2001,
            f"{name} must be an OCPI DateTime such as 2024-01-31T12:00:00Z, got {raw[:40]!r}",
            BAD_PARAMS_HTTP_STATUS,
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_page(request: Request, max_limit: int) -> PageParams:
    """Validated paging parameters; `limit` above `max_limit` is capped, never an error (spec)."""
    offset = _int_param(request, "offset", minimum=0) or 0
    limit = _int_param(request, "limit", minimum=1)
    return PageParams(
        offset=offset,
        limit=max_limit if limit is None else min(limit, max_limit),
        date_from=_date_param(request, "date_from"),
        date_to=_date_param(request, "date_to"),
    )


def date_conditions(column: Any, params: PageParams) -> list[Any]:
    """SQLAlchemy filters for the date window: `date_from <= last_updated < date_to`."""
    conditions = []
    if params.date_from is not None:
        conditions.append(column >= params.date_from)
    if params.date_to is not None:
        conditions.append(column < params.date_to)
    return conditions


def _absolute(request: Request, query: str) -> str:
    """This request's URL with another query, on the trusted base (never an arbitrary Host header)."""
    return f"{base_url(request)}{request.url.path}?{query}"


def next_link(request: Request, params: PageParams, returned: int, total: int) -> str | None:
    """`<absolute url>; rel="next"` keeping every query parameter the client sent (filters included),
    with offset/limit replaced; None on the last page. The next offset counts what this page really
    returned, so a short page never opens a gap."""
    next_offset = params.offset + returned
    if returned == 0 or next_offset >= total:
        return None
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit") and v.strip()]
    query += [("offset", str(next_offset)), ("limit", str(params.limit))]
    return f'<{_absolute(request, urlencode(query))}>; rel="next"'


def page_headers(request: Request, params: PageParams, returned: int, total: int, max_limit: int) -> dict[str, str]:
    headers = {"X-Total-Count": str(total), "X-Limit": str(max_limit)}
    link = next_link(request, params, returned, total)
    if link is not None:
        headers["Link"] = link
    return headers


def paginated(
    request: Request,
    items: list[Any],
    total: int,
    params: PageParams,
    max_limit: int,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The envelope around one page of `items` plus the pagination headers."""
    all_headers = {**(headers or {}), **page_headers(request, params, len(items), total, max_limit)}
    return ocpi_response(items, headers=all_headers)


class SplicedOcpiResponse(OcpiResponse):
    """A success envelope whose `data` is already-serialised JSON, sent as three body parts (head,
    data, tail) so a large cached page goes to the socket without being copied into a new buffer.
    The envelope itself still comes from `ocpi_response`, so there is one format. `.body` is empty."""

    def __init__(self, data_json: bytes, headers: Mapping[str, str] | None = None) -> None:
        envelope = bytes(ocpi_response(None).body)  # {"status_code":1000,"timestamp":"…"}
        self.parts = (b'{"data":', data_json, b"," + envelope[1:])
        length = str(sum(len(p) for p in self.parts))
        super().__init__(b"", headers={**(headers or {}), "content-length": length})
        self.ocpi_status_code = 1000

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(self.parts) - 1})


def raw_ocpi_response(data_json: bytes, headers: Mapping[str, str] | None = None) -> Response:
    return SplicedOcpiResponse(data_json, headers)


def raw_paginated(
    request: Request,
    page_json: bytes,
    returned: int,
    total: int,
    params: PageParams,
    max_limit: int,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """`paginated` for a page that is already a JSON array (of `returned` items)."""
    all_headers = {**(headers or {}), **page_headers(request, params, returned, total, max_limit)}
    return SplicedOcpiResponse(page_json, all_headers)

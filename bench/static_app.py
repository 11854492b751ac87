"""Bench-only ASGI app: answers every GET with one precomputed body, the ceiling bench_locations.py
compares the locations pages with (the same uvicorn and Starlette, no database, no OCPI work).

The body is read once at import from the file named by BENCH_STATIC_BODY.

    BENCH_STATIC_BODY=page.json uvicorn bench.static_app:app --port 8001
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ["BENCH_STATIC_BODY"]).read_bytes()


async def static_page(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/{path:path}", static_page, methods=["GET"])])

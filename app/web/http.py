"""Small HTTP helpers shared by the control-plane routes: JSON responses from models, 422 bodies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.lifecycle.models import workflow_id
from app.observability.logging import bind

# Ids are 32-bit in the database (Postgres INTEGER primary keys): a larger one cannot exist.
MAX_ID = 2**31 - 1


def model_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json")


def unprocessable(issues: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": issues}, status_code=422)


def issue(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def from_validation_error(exc: ValidationError, prefix: str) -> JSONResponse:
    return unprocessable(
        [issue([prefix, *e["loc"]], e["msg"], e["type"]) for e in exc.errors(include_url=False, include_input=False)]
    )


def require_path_id(request: Request, name: str = "cpo_id") -> int:
    """Positive integer path ids up to MAX_ID; anything else is a 422 naming the parameter (never a 404
    or 500: DELETE, which never answers 404, validates alike)."""
    raw = request.path_params[name]
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID:
        if name == "cpo_id":
            bind(cpo_id=int(raw), workflow_id=workflow_id(int(raw)))  # for the request's log lines
        return int(raw)
    raise HTTPException(422, [issue(["path", name], f"must be a positive integer (at most {MAX_ID})", "int_parsing")])


def page_query(request: Request) -> tuple[int, int, list[dict[str, Any]]]:
    """`?page=1&limit=50` of the control-plane lists (limit 1–100); problems become 422 issues."""
    values: dict[str, int] = {}
    problems = []
    for name, default, lo, hi in (("page", 1, 1, 10**9), ("limit", 50, 1, 100)):
        raw = request.query_params.get(name)
        if raw is None:
            values[name] = default
        elif raw.isascii() and raw.isdigit() and lo <= int(raw) <= hi:
            values[name] = int(raw)
        else:
            problems.append(issue(["query", name], f"must be an integer between {lo} and {hi}", "int_range"))
    return values.get("page", 1), values.get("limit", 50), problems


def enum_query(request: Request, name: str, allowed: Iterable[str], problems: list[dict[str, Any]]) -> str | None:
    """An optional `?name=` filter that must be one of `allowed`; a bad value adds a 422 issue."""
    value = request.query_params.get(name)
    values = list(allowed)
    if value is not None and value not in values:
        problems.append(issue(["query", name], f"must be one of {', '.join(values)}", "enum"))
    return value

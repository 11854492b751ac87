"""Building blocks of the control plane's OpenAPI document: references, JSON responses, the shared error
responses and parameters, and one operation's skeleton (auth and scope included)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.control import schemas as s

REF = "#/components/schemas/{model}"
SECURITY = [{"bearerAuth": []}]
JSON = "application/json"
MARKDOWN = "text/markdown"


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def response(description: str, model: type[BaseModel], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON response whose body is `model`."""
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ref(model)}}}
    if headers:
        out["headers"] = headers
    return out


WWW_AUTH = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
UNAUTHORIZED = response("Missing, malformed, expired or badly signed bearer token.", s.HttpError, WWW_AUTH)
FORBIDDEN = response("Valid token without an `org` claim or without the scope this operation needs.", s.HttpError)
CPO_NOT_FOUND = response(
    "No such CPO in your org (another org's CPO is indistinguishable from a missing one).", s.HttpError
)
INVALID = response(
    "Invalid parameter or body; each issue names its location (`loc`). A body nesting arrays/objects "
    'deeper than `CPOLAB_MAX_JSON_DEPTH` (32) is one issue at `["body"]` of type `json_too_deep`.',
    s.ValidationErrorOut,
)

CPO_ID = {
    "name": "cpo_id",
    "in": "path",
    "required": True,
    "description": (
        "CPO id: a positive integer (at most 2147483647) rendered as a string (e.g. `101`). Anything else is a 422."
    ),
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}

PAGING = [
    {
        "name": "page",
        "in": "query",
        "required": False,
        "description": "1-based page number.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 10**9, "default": 1},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Page size.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
    },
]


def operation(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str = "CPOs",
    scope: str = "cpos:read",
    description: str = "",
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": (description + "\n\n" if description else "") + f"Requires scope `{scope}`.",
        "tags": [tag],
        "security": SECURITY,
    }
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    op["responses"] = {**responses, "401": UNAUTHORIZED, "403": FORBIDDEN}
    op["responses"] = dict(sorted(op["responses"].items()))
    return op

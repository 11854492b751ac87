"""OpenAPI 3.1 document of the control plane, generated from app.control.schemas, plus a docs page.

Every schema comes from the pydantic models the routes serialise (`app.control.schemas`), rendered once per
process with `models_json_schema`; this module only describes paths, parameters and status codes.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from app.control import schemas as s
from app.control.charger_actions import ActionResult, ChargerActionRequest, LocationActionResult
from app.control.openapi_chargers import SCHEMA_DESCRIPTIONS as CHARGER_SCHEMA_DESCRIPTIONS
from app.control.openapi_chargers import charger_paths
from app.control.openapi_parts import (
    CPO_ID,
    CPO_NOT_FOUND,
    INVALID,
    JSON,
    MARKDOWN,
    PAGING,
    REF,
    SECURITY,
    operation,
    ref,
    response,
)
from app.control.traffic import OcpiLogPage

LOG_PATH = "/ocpi/cpos/{cpo_id}/ocpi-log"  # served with the OCPI routes, documented here


EXAMPLE_BODY = {
    "template": "small-urban-ac",
    "country_code": "FR",
    "party_id": "ABC",
    "name_prefix": "demo",
    "seed": 42,
    "ttl_seconds": 3600,
}

DESCRIPTION = """\
Provision simulated OCPI CPOs in one call. `POST /ocpi/cpos` answers **202** with Token A at once;
a durable Temporal workflow then builds the network while you poll `status_url` until `READY` or `FAILED`.

**Authentication**: every operation needs `Authorization: Bearer <JWT>` (HS256, signed with the server
secret; claims `sub`, `org` (your tenant), `scope` (space-separated `cpos:read`, `cpos:write`), numeric
`exp`, and `iat`; a lifetime longer than the server maximum, 90 days by default, is refused).
A missing, malformed, expired or badly signed token is **401**; a valid token without `org` or without
the scope the operation needs is **403**. A CPO of another org is indistinguishable from a missing one.
`.venv/bin/cpolab token --org dev` mints a development token (`make run` prints one).
Errors are JSON `{"detail": …}`; 422 bodies list `{loc, msg, type}` issues.
"""

# Every component schema gets a description (the docs page shows it above the field table).
SCHEMA_DESCRIPTIONS = {
    "BundleRole": "OCPI role the created party takes (case-insensitive on input).",
    "CapsOut": "Inclusive bounds of an override.",
    "CodedHttpError": "An error with a machine-readable `code`.",
    "CpoAcceptedResponse": "Answer of a create: the CPO is PENDING and its workflow has started. Carries "
    "Token A (never shown again) and a `roam_helper` to register an eMSP with it.",
    "CpoDetail": "One CPO: its summary plus timestamps, overrides, simulation settings and registered OCPI peers. "
    "Never Token A.",
    "CpoError": "Why a CPO FAILED: a stable `code`, a message, whether a retry could help, and the step.",
    "CpoList": "One page of CPOs, newest first.",
    "CpoStatus": "Lifecycle: PENDING → PROVISIONING → READY → DESTROYING → DESTROYED, or FAILED.",
    "CpoStatusResponse": "Where a CPO's lifecycle stands, with live progress while it provisions or tears down.",
    "CpoSummary": "A CPO as listed: party, template, status, topology and its URLs.",
    "DeleteResponse": "Answer of a destroy: the status the CPO is in now.",
    "HttpError": "An error: `detail` says what was wrong.",
    "OcpiLogEntry": "One OCPI exchange: a request the CPO received, or a call it made to an eMSP.",
    "OcpiLogPage": "One page of a CPO's OCPI traffic log, newest first.",
    "PartyScope": "The OCPI party of a CPO (country code, party id, role).",
    "Progress": "Provisioning progress: steps, locations and chargers done out of the planned totals.",
    "ReportOut": "The Markdown one-pager, wrapped in JSON (ask for `text/markdown` to get it bare).",
    "RoamHelper": "What an eMSP needs to register with this CPO: its Credentials object and a curl command.",
    "Simulation": "How the CPO's simulated chargers live: their time scale and whether the CPO makes its own "
    "traffic (background activity). Fixed at create; unknown fields are refused.",
    "TemplateCapsOut": "What `overrides` may set for this template.",
    "TemplateList": "Every template that can be provisioned.",
    "TemplateNotFound": "The template slug is unknown; `template` echoes it.",
    "QuotaExceeded": "A create refused by a per-org quota: which quota, and its limit.",
    "TemplateOut": "A template: its default shape, override caps, OCPP versions and power types.",
    "Topology": "Row counts of the provisioned network.",
    "ValidationErrorOut": "The request was invalid; every issue names its location.",
    "ValidationIssue": "One invalid field: where (`loc`), what (`msg`) and the rule (`type`).",
}


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    out: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (s.CreateCpoRequest, "validation"),
        (s.UpdateCpoRequest, "validation"),
        (ChargerActionRequest, "validation"),
    ]
    responses: list[type[BaseModel]] = [
        s.CpoAcceptedResponse,
        s.CpoStatusResponse,
        s.CpoDetail,
        s.CpoList,
        s.TemplateList,
        s.ReportOut,
        s.DeleteResponse,
        s.HttpError,
        s.CodedHttpError,
        s.TemplateNotFound,
        s.QuotaExceeded,
        s.ValidationErrorOut,
        OcpiLogPage,
        s.ChargerList,
        s.ChargerDetail,
        s.OcppLogPage,
        ActionResult,
        LocationActionResult,
    ]
    out += [(m, "serialization") for m in responses]
    return out


_413 = response("The request body is larger than `CPOLAB_MAX_BODY` bytes (1 MiB); it was not read.", s.HttpError)
_503 = response(
    "The workflow backend is unreachable or no worker answered in time (`workflow_backend_unavailable`; "
    "answered within `CPOLAB_TEMPORAL_RPC_TIMEOUT`, 2.5 s), or, on create, every candidate party_id is taken "
    "(`party_namespace_exhausted`) or a workflow of the new CPO's id already exists in the Temporal namespace "
    "(`workflow_id_conflict`: the database and the namespace are out of step). Nothing was created or changed; "
    "retry later.",
    s.CodedHttpError,
)
_429 = response(
    "Creating this CPO would exceed one of your org's quotas: `quota` names it (`live_cpos` or "
    "`live_chargers`) and `limit` gives its value. Nothing was created.",
    s.QuotaExceeded,
)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Up to 128 printable characters. A retry with the same key (e.g. after a 503) attaches to the "
    "same workflow update instead of applying a second one.",
    "schema": {"type": "string", "maxLength": 128},
}


def _report_200() -> dict[str, Any]:
    out = response(
        "Party, status, locations, topology, chargers by state and the CSMS endpoint, the OCPI peer URL and, "
        "while Token A is unused, how to handshake.",
        s.ReportOut,
    )
    out["content"][MARKDOWN] = {"schema": {"type": "string", "description": "The same one-pager, bare."}}
    return out


def _paths() -> dict[str, Any]:
    def templates(op_id: str, description: str) -> dict[str, Any]:
        gallery = response("Every template with its defaults, caps, OCPP versions and power types.", s.TemplateList)
        return operation(op_id, "Templates gallery", {"200": gallery}, tag="Templates", description=description)

    list_params = [
        *PAGING,
        {
            "name": "status",
            "in": "query",
            "required": False,
            "description": "Only CPOs in this status.",
            "schema": {"$ref": REF.format(model="CpoStatus")},
        },
    ]
    paths: dict[str, Any] = {
        "/ocpi/cpos": {
            "post": operation(
                "createCpo",
                "Create a CPO",
                {
                    "202": response(
                        "Accepted: the provisioning workflow started. Token A is returned here only, never again.",
                        s.CpoAcceptedResponse,
                        {
                            "Location": {
                                "description": "The CPO's `status_url`.",
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        },
                    ),
                    "404": response("Unknown template; `template` echoes the slug.", s.TemplateNotFound),
                    "413": _413,
                    "422": INVALID,
                    "429": _429,
                    "503": _503,
                },
                scope="cpos:write",
                description="Answers within a second; poll `status_url` (the `Location` header) until `READY`.",
                body={
                    "required": True,
                    "content": {JSON: {"schema": ref(s.CreateCpoRequest), "example": EXAMPLE_BODY}},
                },
            ),
            "get": operation(
                "listCpos",
                "List your CPOs",
                {"200": response("One page of your org's CPOs, newest first.", s.CpoList), "422": INVALID},
                parameters=list_params,
            ),
        },
        "/ocpi/cpos/templates": {"get": templates("listTemplates", "Also served at `/ocpi/templates/cpos`.")},
        "/ocpi/templates/cpos": {"get": templates("listTemplatesAlias", "Alias of `GET /ocpi/cpos/templates`.")},
        "/ocpi/cpos/{cpo_id}": {
            "parameters": [CPO_ID],
            "get": operation(
                "getCpo",
                "Get a CPO",
                {"200": response("The CPO (never Token A).", s.CpoDetail), "404": CPO_NOT_FOUND, "422": INVALID},
            ),
            "patch": operation(
                "updateCpo",
                "Change a CPO's TTL",
                {
                    "200": response("The CPO with its new `expires_at`.", s.CpoDetail),
                    "404": CPO_NOT_FOUND,
                    "409": response(
                        "The CPO is being torn down, failed or is gone: its TTL can no longer change.", s.HttpError
                    ),
                    "413": _413,
                    "422": INVALID,
                    "503": _503,
                },
                scope="cpos:write",
                description="Sets `expires_at` to now + `ttl_seconds` (null: never expires), on the CPO's "
                "durable timer.",
                parameters=[IDEMPOTENCY_KEY],
                body={
                    "required": True,
                    "content": {JSON: {"schema": ref(s.UpdateCpoRequest), "example": {"ttl_seconds": 7200}}},
                },
            ),
            "delete": operation(
                "deleteCpo",
                "Destroy a CPO",
                {
                    "200": response("Already gone, failed, or not yours: nothing to do.", s.DeleteResponse),
                    "202": response("Teardown started (or is running); poll `status_url`.", s.DeleteResponse),
                    "422": INVALID,
                    "503": _503,
                },
                scope="cpos:write",
                description="Idempotent: repeat it freely. A live CPO whose workflow was terminated or lost is "
                "torn down by the platform (202 as well).",
            ),
        },
        "/ocpi/cpos/{cpo_id}/status": {
            "parameters": [CPO_ID],
            "get": operation(
                "getCpoStatus",
                "Provisioning status",
                {
                    "200": response(
                        "Status, progress and error (when FAILED); once READY, the chargers' live states.",
                        s.CpoStatusResponse,
                    ),
                    "404": CPO_NOT_FOUND,
                    "422": INVALID,
                },
                description="Cheap enough to poll every second.",
            ),
        },
        "/ocpi/cpos/{cpo_id}/report": {
            "parameters": [CPO_ID],
            "get": operation(
                "getCpoReport",
                "Markdown one-pager",
                {
                    "200": _report_200(),
                    "404": CPO_NOT_FOUND,
                    "422": INVALID,
                },
                description="JSON by default; `Accept: text/markdown` returns the Markdown itself. It reflects "
                "the CPO's state: no handshake recipe once Token A is used, no expiry once it is torn down.",
            ),
        },
    }
    paths[LOG_PATH] = {
        "parameters": [CPO_ID, *PAGING],
        "get": operation(
            "getCpoOcpiLog",
            "OCPI traffic log",
            {
                "200": response("One page of this CPO's OCPI exchanges.", OcpiLogPage),
                "404": CPO_NOT_FOUND,
                "422": INVALID,
            },
            description="Every OCPI request this CPO received with a valid token of its own and every call it "
            "made, newest first, within the retention (`CPOLAB_TRAFFIC_LOG_MAX_ROWS` entries, "
            "`CPOLAB_TRAFFIC_LOG_MAX_AGE` seconds). Requests without such a token are only counted "
            "(`rejected_unauthenticated`).",
        ),
    }
    paths.update(charger_paths())
    return paths


def _package_version() -> str:
    try:
        return version("cpolab")
    except PackageNotFoundError:  # running from a bare checkout
        return "0.0.0"


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per process; treat it as read-only)."""
    _, defs = models_json_schema(_models(), ref_template=REF)
    for name, schema in defs.get("$defs", {}).items():
        schema.setdefault("description", {**SCHEMA_DESCRIPTIONS, **CHARGER_SCHEMA_DESCRIPTIONS}.get(name, ""))
    return {
        "openapi": "3.1.0",
        "info": {"title": "cpolab control plane", "version": _package_version(), "description": DESCRIPTION},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [
            {"name": "CPOs", "description": "Create, inspect and destroy simulated CPOs."},
            {"name": "Templates", "description": "What can be provisioned."},
            {"name": "Chargers", "description": "A CPO's simulated OCPP charge points and how to connect as one."},
        ],
        "security": SECURITY,
        "paths": _paths(),
        "components": {
            "schemas": dict(sorted(defs.get("$defs", {}).items())),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 JWT with claims `sub`, `org`, `scope`, `exp`.",
                }
            },
        },
    }


@cache
def _document_bytes() -> bytes:
    return json.dumps(openapi_document(), ensure_ascii=False, separators=(",", ":")).encode()


@cache
def _docs_html() -> str:
    from app.control.docs_page import render_docs
    from app.ocpi import routes as ocpi_routes

    peer = [
        (route.path, sorted(m for m in route.methods or () if m != "HEAD"))
        for route in ocpi_routes.routes
        if isinstance(route, Route) and "{rest:path}" not in route.path  # the catch-all answers OCPI 404s
    ]
    return render_docs(openapi_document(), peer)


async def openapi_json(request: Request) -> Response:
    return Response(_document_bytes(), media_type=JSON)


async def docs(request: Request) -> Response:
    return HTMLResponse(_docs_html())


routes: list[BaseRoute] = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
]

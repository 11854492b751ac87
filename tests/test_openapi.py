"""The OpenAPI 3.1 document and the docs page: valid, complete, and true to what the API really returns."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis

# What `schemathesis.openapi.from_dict` would import lazily, mid-test: pytest rewrites a plugin's modules
# with `ast.parse`, and CPython 3.11's parser is not thread-safe ("AST constructor recursion depth
# mismatch" when a stack's thread parses at the same moment). At collection nothing else runs.
import schemathesis.specs.openapi.schemas
from schemathesis.specs.openapi.definitions import OPENAPI_31  # the OAS 3.1 meta-schema schemathesis ships

from app.control import routes as control_plane
from app.control.openapi import LOG_PATH, openapi_document
from app.ocpi import routes as ocpi_routes
from app.web.auth import READ, mint_token
from tests.stack import SECRET, Stack, wait_status

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
METHODS = {"get", "post", "put", "patch", "delete"}
BODY = {"template": "small-urban-ac", "country_code": "DE", "party_id": "OAS", "name_prefix": "oas"}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


class Conformance:
    """Validates real responses against what the document says for (method, path template, status)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, method: str, path: str, resp: httpx.Response) -> dict[str, Any]:
        status = str(resp.status_code)
        documented = self.doc["paths"][path][method.lower()]["responses"]
        assert status in documented, f"{method} {path} answered undocumented {status}: {resp.text}"
        spec = documented[status]
        for name, header in spec.get("headers", {}).items():
            if header.get("required"):
                assert name in resp.headers, f"{method} {path} {status} lacks header {name}"
        assert resp.headers["content-type"].startswith("application/json")
        schema = spec["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator(
            {"$schema": DRAFT_2020_12, **schema, "components": self.doc["components"]}
        )
        body = resp.json()
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, f"{method} {path} {status} violates {schema}: {errors}\n{body}"
        self.seen.add((method.lower(), path, status))
        return body


@pytest.fixture(scope="module")
async def served(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.api_url) as c:  # no Authorization: the document is public
        resp = await c.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()


def test_served_document_is_the_generated_one(served: dict[str, Any]) -> None:
    assert served == openapi_document()
    assert openapi_document() is openapi_document()  # built once per process


def test_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    assert served["openapi"].startswith("3.1.")
    errors = [
        f"{e.instance_path}: {e.message}" for e in jsonschema_rs.Draft202012Validator(OPENAPI_31).iter_errors(served)
    ]
    assert not errors, errors
    schemas = served["components"]["schemas"]
    for name, schema in schemas.items():
        try:
            jsonschema_rs.meta.validate({"$schema": DRAFT_2020_12, **schema})
        except jsonschema_rs.ValidationError as exc:
            pytest.fail(f"component schema {name} is not valid Draft 2020-12: {exc}")
    prefix = "#/components/schemas/"
    for ref in _refs(served):
        assert ref.startswith(prefix) and ref.removeprefix(prefix) in schemas, ref
    loaded = schemathesis.openapi.from_dict(served)
    assert sum(1 for _ in loaded.get_all_operations()) == sum(
        len(METHODS & set(item)) for item in served["paths"].values()
    )


def test_every_route_is_documented_and_nothing_else(served: dict[str, Any]) -> None:
    # The control plane: app.control.cpos's routes, plus the OCPI traffic log served with the OCPI routes.
    routes = [
        *control_plane.routes,
        *(r for r in ocpi_routes.routes if getattr(r, "path", "").startswith("/ocpi/cpos")),
    ]
    routed = {
        (route.path, method.lower())
        for route in routes
        for method in (getattr(route, "methods", None) or ())
        if method != "HEAD"
    }
    documented = {(path, m) for path, item in served["paths"].items() for m in item if m in METHODS}
    assert routed == documented


def test_every_operation_needs_a_bearer_token(served: dict[str, Any]) -> None:
    scheme = served["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for path, item in served["paths"].items():
        for method in METHODS & set(item):
            op = item[method]
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            assert op["operationId"]
    for path in served["paths"]:
        if "{cpo_id}" in path:
            params = {p["name"]: p for p in served["paths"][path]["parameters"] if p["in"] == "path"}
            assert set(params) == {
                "cpo_id",
                *(name for name in ("identity", "location_id", "action") if f"{{{name}}}" in path),
            }
            assert params["cpo_id"]["required"] is True
            assert params["cpo_id"]["schema"] == {"type": "string", "pattern": "^[0-9]+$"}
            for method in METHODS & set(served["paths"][path]):
                assert "422" in served["paths"][path][method]["responses"], (method, path)


async def test_real_responses_match_the_documented_schemas(stack: Stack, served: dict[str, Any]) -> None:
    conf = Conformance(served)
    org = "openapi-conformance"
    async with stack.client(org=org) as c:
        created = conf.check("POST", "/ocpi/cpos", await c.post("/ocpi/cpos", json={**BODY, "seed": 3}))
        cpo_id = created["cpo_id"]
        conf.check("POST", "/ocpi/cpos", await c.post("/ocpi/cpos", json={**BODY, "template": "nope"}))
        conf.check("POST", "/ocpi/cpos", await c.post("/ocpi/cpos", json={**BODY, "country_code": "XX"}))
        conf.check("POST", "/ocpi/cpos", await c.post("/ocpi/cpos", json={**BODY, "overrides": {"locations": 10**6}}))
        conf.check("POST", "/ocpi/cpos", await c.post("/ocpi/cpos", content=b"{nope"))
        conf.check("GET", "/ocpi/cpos/{cpo_id}/status", await c.get(f"/ocpi/cpos/{cpo_id}/status"))
        ready = await wait_status(c, cpo_id, {"READY", "FAILED"})
        assert ready["status"] == "READY"
        conf.check("GET", "/ocpi/cpos/{cpo_id}/status", await c.get(f"/ocpi/cpos/{cpo_id}/status"))
        conf.check("GET", "/ocpi/cpos/{cpo_id}", await c.get(f"/ocpi/cpos/{cpo_id}"))
        conf.check("GET", "/ocpi/cpos/{cpo_id}/report", await c.get(f"/ocpi/cpos/{cpo_id}/report"))
        for params in ({}, {"page": 1, "limit": 1, "status": "READY"}):
            listed = conf.check("GET", "/ocpi/cpos", await c.get("/ocpi/cpos", params=params))
            assert listed["data"]
        conf.check("GET", "/ocpi/cpos", await c.get("/ocpi/cpos", params={"limit": 101}))
        for path in ("/ocpi/cpos/templates", "/ocpi/templates/cpos"):
            conf.check("GET", path, await c.get(path))
        for path in ("/ocpi/cpos/{cpo_id}", "/ocpi/cpos/{cpo_id}/status", "/ocpi/cpos/{cpo_id}/report"):
            conf.check("GET", path, await c.get(path.format(cpo_id="987654321")))  # 404
            conf.check("GET", path, await c.get(path.format(cpo_id="12ab")))  # 422
        conf.check("DELETE", "/ocpi/cpos/{cpo_id}", await c.delete("/ocpi/cpos/0"))  # 422
        conf.check("DELETE", "/ocpi/cpos/{cpo_id}", await c.delete("/ocpi/cpos/987654321"))  # 200: nothing to do
        if LOG_PATH in served["paths"]:
            versions = await c.get(created["ocpi_peer_url"], headers={"Authorization": f"Token {created['token_a']}"})
            assert versions.status_code == 200, versions.text  # one OCPI exchange for the log
            log = conf.check("GET", LOG_PATH, await c.get(LOG_PATH.format(cpo_id=cpo_id)))
            assert log["total"] == len(log["data"]) >= 1, log
            conf.check("GET", LOG_PATH, await c.get(LOG_PATH.format(cpo_id="987654321")))  # 404
            conf.check("GET", LOG_PATH, await c.get(LOG_PATH.format(cpo_id=cpo_id), params={"limit": 0}))  # 422
        deleted = conf.check("DELETE", "/ocpi/cpos/{cpo_id}", await c.delete(f"/ocpi/cpos/{cpo_id}"))
        assert deleted["status"] == "DESTROYING"
        gone = await wait_status(c, cpo_id, {"DESTROYED"})
        conf.check("GET", "/ocpi/cpos/{cpo_id}/status", await c.get(f"/ocpi/cpos/{cpo_id}/status"))
        assert gone["status"] == "DESTROYED"
        conf.check("DELETE", "/ocpi/cpos/{cpo_id}", await c.delete(f"/ocpi/cpos/{cpo_id}"))  # 200 when gone

    read_only = {"Authorization": f"Bearer {mint_token(SECRET, org=org, scopes=(READ,))}"}
    async with httpx.AsyncClient(base_url=stack.api_url) as anon:
        for method, path in (("GET", "/ocpi/cpos"), ("POST", "/ocpi/cpos"), ("DELETE", "/ocpi/cpos/{cpo_id}")):
            url = path.format(cpo_id=cpo_id)
            conf.check(method, path, await anon.request(method, url, json=BODY if method == "POST" else None))  # 401
            if method != "GET":
                resp = await anon.request(method, url, json=BODY if method == "POST" else None, headers=read_only)
                conf.check(method, path, resp)  # 403

    expected = (
        {("post", "/ocpi/cpos", code) for code in ("202", "401", "403", "404", "422")}
        | {
            ("get", "/ocpi/cpos", "200"),
            ("get", "/ocpi/cpos", "401"),
            ("get", "/ocpi/cpos", "422"),
            ("get", "/ocpi/cpos/templates", "200"),
            ("get", "/ocpi/templates/cpos", "200"),
            ("delete", "/ocpi/cpos/{cpo_id}", "200"),
            ("delete", "/ocpi/cpos/{cpo_id}", "202"),
            ("delete", "/ocpi/cpos/{cpo_id}", "401"),
            ("delete", "/ocpi/cpos/{cpo_id}", "403"),
            ("delete", "/ocpi/cpos/{cpo_id}", "422"),
        }
        | {
            ("get", path, code)
            for path in ("/ocpi/cpos/{cpo_id}", "/ocpi/cpos/{cpo_id}/status", "/ocpi/cpos/{cpo_id}/report")
            for code in ("200", "404", "422")
        }
    )
    assert expected <= conf.seen, expected - conf.seen


async def test_docs_page_lists_every_operation(stack: Stack, served: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as c:  # public, like the document
        resp = await c.get("/docs")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "<script" not in html and "src=" not in html and "stylesheet" not in html  # self-contained
    for path, item in served["paths"].items():
        assert f"<code>{path}</code>" in html, path
        for method in METHODS & set(item):
            op = item[method]
            assert f'id="{op["operationId"]}"' in html
            for code in op["responses"]:
                assert f"<strong>{code}</strong>" in html
    for name in served["components"]["schemas"]:
        assert f"id='schema-{name}'" in html, name
    for needle in ("Authorization: Bearer", "cpos:write", ".venv/bin/cpolab token --org dev", "quick start"):
        assert needle.lower() in html.lower(), needle
    assert "acme" not in html and "$(cpolab " not in html  # the org `make run`'s token has, the venv's CLI
    assert html.count("every operation needs") == 1  # one auth paragraph
    assert "| jq -r .cpo_id)" in html and "$CPO_ID/status" in html and "/ocpi/cpos/1/" not in html
    # The OCPI peer endpoints are listed too (every route but the catch-all that answers OCPI 404s).
    peer = [r.path for r in ocpi_routes.routes if r.path.startswith("/ocpi/peer/") and "{rest:path}" not in r.path]
    assert len(peer) >= 10
    for path in peer:
        assert f"<code>{path.replace('{cpo_id:int}', '{cpo_id}')}</code>" in html, path
    assert "text/markdown" in html


def test_every_schema_and_response_is_described(served: dict[str, Any]) -> None:
    for name, schema in served["components"]["schemas"].items():
        assert schema.get("description", "").strip(), f"schema {name} has no description"
    for path, item in served["paths"].items():
        for method in METHODS & set(item):
            for code, resp in item[method]["responses"].items():
                assert resp.get("description", "").strip(), (method, path, code)


def test_report_documents_both_media_types(served: dict[str, Any]) -> None:
    content = served["paths"]["/ocpi/cpos/{cpo_id}/report"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/markdown"}
    assert content["text/markdown"]["schema"]["type"] == "string"

"""Human docs page: self-contained HTML rendered server-side from the OpenAPI document (no JS, no CDN)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")
_REF_PREFIX = "#/components/schemas/"

CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1000px;margin:0 auto;padding:24px 32px 64px}
h1{margin-bottom:0}h2{border-bottom:1px solid #d8dde6;padding-bottom:4px;margin-top:40px}
code,pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f5;border-radius:4px}
code{padding:1px 4px}pre{padding:12px;overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:8px 0 16px}th,td{border:1px solid #d8dde6;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#eef1f5}
.op{background:#fff;border:1px solid #d8dde6;border-radius:6px;padding:4px 16px 8px;margin:16px 0}
.m{display:inline-block;min-width:64px;text-align:center;color:#fff;border-radius:4px;padding:1px 6px;
font:bold 13px ui-monospace,monospace;margin-right:8px}
.get{background:#2f6fce}.post{background:#2e8b57}.delete{background:#c0392b}.put,.patch{background:#b7791f}
.muted{color:#5b6474}nav li{margin:2px 0}
"""


def _ref_name(ref: str) -> str:
    return ref.removeprefix(_REF_PREFIX)


def _link(name: str) -> str:
    return f'<a href="#schema-{escape(name)}"><code>{escape(name)}</code></a>'


def _type(schema: dict[str, Any]) -> str:
    """A short HTML rendering of a JSON Schema's type (links for `$ref`s)."""
    if "$ref" in schema:
        return _link(_ref_name(schema["$ref"]))
    if "anyOf" in schema or "oneOf" in schema:
        return " | ".join(_type(x) for x in schema.get("anyOf", schema.get("oneOf", [])))
    if "const" in schema:
        return f"<code>{escape(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{escape(json.dumps(v))}</code>" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of string → {_type(schema['additionalProperties'])}"
    if kind is None:
        return "any"
    text = " | ".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    return f"<code>{escape(text)}</code>"


def _constraints(schema: dict[str, Any]) -> str:
    labels = {
        "minimum": "≥ {}",
        "maximum": "≤ {}",
        "minLength": "min length {}",
        "maxLength": "max length {}",
        "pattern": "pattern <code>{}</code>",
        "default": "default <code>{}</code>",
    }
    parts = []
    for key, label in labels.items():
        if key in schema:
            shown = json.dumps(schema[key]) if key == "default" else str(schema[key])
            parts.append(label.format(escape(shown)))
    return ", ".join(parts)


def _md(text: str) -> str:
    """Escape, then render `code` spans and **bold** (the only Markdown our descriptions use)."""
    out = escape(text)
    for marker, tag in (("`", "code"), ("**", "strong")):
        pieces = out.split(marker)
        if len(pieces) % 2 == 1:
            out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    return out.replace("\n\n", "<br><br>")


def _schema_table(schema: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return f"<p>{_type(schema)}</p>"
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{_type(p)}</td><td>{'yes' if name in required else 'no'}</td>"
        f"<td>{_constraints(p)}</td><td>{_md(p.get('description', ''))}</td></tr>"
        for name, p in props.items()
    )
    extra = " Unknown fields are rejected." if schema.get("additionalProperties") is False else ""
    return (
        "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Constraints</th><th>Description</th></tr>"
        f"{rows}</table>" + (f"<p class=muted>{extra.strip()}</p>" if extra else "")
    )


def _parameters(params: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td><td>{_type(p['schema'])}</td>"
        f"<td>{'yes' if p.get('required') else 'no'}</td><td>{_constraints(p['schema'])}</td>"
        f"<td>{_md(p.get('description', ''))}</td></tr>"
        for p in params
    )
    return (
        "<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Constraints</th>"
        f"<th>Description</th></tr>{rows}</table>"
    )


def _responses(responses: dict[str, Any]) -> str:
    rows = []
    for code, resp in responses.items():
        content = resp.get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        body = _type(schema) if schema else "—"
        others = [media for media in content if media != "application/json"]
        if others:
            body += "".join(f"<br>or <code>{escape(media)}</code> (Accept)" for media in others)
        headers = ", ".join(f"<code>{escape(h)}</code>" for h in resp.get("headers", {}))
        rows.append(
            f"<tr><td><strong>{escape(code)}</strong></td><td>{body}</td>"
            f"<td>{headers or '—'}</td><td>{_md(resp.get('description', ''))}</td></tr>"
        )
    return (
        "<h4>Responses</h4><table><tr><th>Status</th><th>Body</th><th>Headers</th><th>Description</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _operation(path: str, method: str, op: dict[str, Any], shared: list[dict[str, Any]]) -> str:
    parts = [
        f'<section class=op id="{escape(op["operationId"])}">',
        f"<h3><span class='m {method}'>{method.upper()}</span><code>{escape(path)}</code></h3>",
        f"<p><strong>{escape(op.get('summary', ''))}</strong>. {_md(op.get('description', ''))}</p>",
    ]
    params = [*shared, *op.get("parameters", [])]
    if params:
        parts.append(_parameters(params))
    body = op.get("requestBody")
    if body:
        media = body["content"]["application/json"]
        parts.append(f"<h4>Request body</h4><p>{_type(media['schema'])} (JSON, required)</p>")
        if "example" in media:
            parts.append(f"<pre>{escape(json.dumps(media['example'], indent=2))}</pre>")
    parts.append(_responses(op["responses"]))
    parts.append("</section>")
    return "".join(parts)


def _quick_start() -> str:
    steps = """\
# 1. a development token for org "dev" (`make run` prints one too)
export CPOLAB_TOKEN=$(.venv/bin/cpolab token --org dev)

# 2. create a CPO and watch it provision
.venv/bin/cpolab create small-urban-ac --country FR --party ABC --name-prefix demo --wait

# the same over plain HTTP, keeping the new CPO's id
API=http://127.0.0.1:8000
AUTH="Authorization: Bearer $CPOLAB_TOKEN"
CPO_ID=$(curl -sS -X POST $API/ocpi/cpos -H "$AUTH" -H 'Content-Type: application/json' \\
  -d '{"template": "small-urban-ac", "country_code": "FR", "party_id": "ABD", "name_prefix": "demo"}' \\
  | tee created.json | jq -r .cpo_id)
jq -r .roam_helper.curl_snippet created.json   # the eMSP registration command, raw (jq -r)
.venv/bin/cpolab snippet created.json          # the same without jq
curl -sS $API/ocpi/cpos/$CPO_ID/status -H "$AUTH"
curl -sS $API/ocpi/cpos/$CPO_ID/report -H "$AUTH" -H 'Accept: text/markdown'

# its chargers (state, last seen), and one charger's CSMS URL, username and password (scope cpos:write)
.venv/bin/cpolab chargers $CPO_ID
IDENTITY=$(curl -sS "$API/ocpi/cpos/$CPO_ID/chargers?limit=1" -H "$AUTH" | jq -r '.data[0].identity')
curl -sS $API/ocpi/cpos/$CPO_ID/chargers/$IDENTITY -H "$AUTH" | jq .connection
curl -sS -X DELETE $API/ocpi/cpos/$CPO_ID -H "$AUTH"
"""
    return (
        "<h2 id=quick-start>Quick start</h2>"
        f"<pre>{escape(steps)}</pre>"
        '<p>Machine-readable: <a href="/openapi.json"><code>/openapi.json</code></a> (OpenAPI 3.1).</p>'
    )


# What each OCPI module of a CPO's peer platform does (paths come from the routes themselves).
_OCPI_MODULES = {
    "versions": "Versions this CPO speaks (Token A, then Token C).",
    "{version}": "Version details: the module endpoints of that version.",
    "credentials": "Handshake: POST your credentials with Token A (the CPO calls your versions URL back with "
    "your Token B and answers with Token C); PUT rotates Token C; DELETE unregisters.",
    "locations": "Locations, EVSEs and connectors (SENDER); paginated.",
    "tariffs": "Tariffs (SENDER); paginated.",
    "sessions": "Sessions (SENDER); paginated.",
    "cdrs": "CDRs (SENDER); paginated.",
    "tokens": "Your tokens (RECEIVER).",
    "commands": "START_SESSION, STOP_SESSION, RESERVE_NOW, CANCEL_RESERVATION, UNLOCK_CONNECTOR (RECEIVER); "
    "the result is POSTed to your `response_url`.",
}


def _ocpi_peer(endpoints: list[tuple[str, list[str]]]) -> str:
    rows = []
    for path, methods in endpoints:
        shown = path.replace("{cpo_id:int}", "{cpo_id}")
        module = shown.removeprefix("/ocpi/peer/{cpo_id}/").split("/")[0]
        rows.append(
            f"<tr><td>{escape(' '.join(methods))}</td><td><code>{escape(shown)}</code></td>"
            f"<td>{_md(_OCPI_MODULES.get(module, ''))}</td></tr>"
        )
    return (
        "<h2 id=ocpi-peer>OCPI peer endpoints</h2>"
        "<p>Each CPO is an OCPI 2.2.1 (or 2.1.1) platform rooted at its <code>ocpi_peer_url</code>. These "
        "endpoints take <code>Authorization: Token &lt;token&gt;</code> (Token A to register, then Token C), "
        "not the bearer JWT, and answer in the OCPI envelope (<code>data</code>, <code>status_code</code>, "
        "<code>status_message</code>, <code>timestamp</code>). <code>{version}</code> is <code>2.2.1</code> or "
        "<code>2.1.1</code>.</p>"
        "<table><tr><th>Methods</th><th>Path</th><th>What</th></tr>" + "".join(rows) + "</table>"
    )


def render_docs(doc: dict[str, Any], ocpi_peer: list[tuple[str, list[str]]]) -> str:
    info = doc["info"]
    ops: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = [
        (path, method, item[method], item.get("parameters", []))
        for path, item in doc["paths"].items()
        for method in METHODS
        if method in item
    ]
    nav = "".join(
        f"<li><a href='#{escape(op['operationId'])}'><span class='m {m}'>{m.upper()}</span></a>"
        f"<code>{escape(path)}</code> — {escape(op.get('summary', ''))}</li>"
        for path, m, op, _ in ops
    )
    schemas = doc.get("components", {}).get("schemas", {})
    schema_sections = "".join(
        f"<section id='schema-{escape(name)}'><h3><code>{escape(name)}</code></h3>"
        f"{'<p>' + _md(sch['description']) + '</p>' if sch.get('description') else ''}{_schema_table(sch)}</section>"
        for name, sch in schemas.items()
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(info['title'])} — API docs</title><style>{CSS}</style></head><body><main>"
        f"<h1>{escape(info['title'])}</h1><p class=muted>Version {escape(info['version'])} · OpenAPI "
        f"{escape(doc['openapi'])}</p><p>{_md(info.get('description', ''))}</p>"
        f"{_quick_start()}<h2 id=operations>Operations</h2><nav><ul>{nav}</ul></nav>"
        + "".join(_operation(*op) for op in ops)
        + _ocpi_peer(ocpi_peer)
        + f"<h2 id=schemas>Schemas</h2>{schema_sections}</main></body></html>"
    )

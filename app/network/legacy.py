"""Shapes for CPO workflow runs started before their input carried one.

New runs get their shape from the API and their blueprint from the CPO row (both resolved once at
create); only replays of older histories and rows created before blueprints existed come here, and
they read the catalog as those runs always did.
"""

from __future__ import annotations

from app.network.blueprint import Blueprint, resolve_blueprint
from app.network.generator import NetworkShape, NetworkSpec, network_shape


def legacy_blueprint(spec: NetworkSpec) -> Blueprint:
    bp = resolve_blueprint(spec.template, spec.country_code)
    if bp is None:
        raise ValueError(f"template {spec.template!r} is no longer in the catalog")
    return bp


def legacy_shape(spec: NetworkSpec) -> NetworkShape:
    return network_shape(spec, legacy_blueprint(spec))

"""Shapes for CPO workflow runs started before their input carried one.

New runs get their shape from the API (resolved once at create); only replays of older histories
come here, and they read the catalog as those runs always did.
"""

from __future__ import annotations

from app.network.generator import NetworkShape, NetworkSpec, network_shape


def legacy_shape(spec: NetworkSpec) -> NetworkShape:
    return network_shape(spec)

"""Who is calling which CPO: the CPO row and the live token an OCPI request presents, in one read.

Read from the database on every request, in every API process, never cached: a token revoked
anywhere (credentials PUT/DELETE, re-registration, teardown) is refused by the next request.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, bindparam, select

from app.ocpi.reads import read_rows
from app.security.tokens import hash_token
from app.store.db import Database
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import Cpo, CredentialToken


@dataclass(frozen=True)
class CpoInfo:
    """The columns of the CPO row the OCPI layer uses (read per request, never an ORM object)."""

    id: int
    status: str
    ocpi_version: str
    country_code: str
    party_id: str
    role: str
    name_prefix: str
    locations: int  # the network's size: exactly its Location rows once it is READY


@dataclass(frozen=True)
class Credential:
    """A live token of the CPO that the request presented, and the routing ids of its peer."""

    token: str  # as presented (credentials GET echoes it; a PUT/DELETE consumes it)
    kind: str  # "A" or "C"
    peer_id: int | None  # None for Token A
    peer_country_code: str | None
    peer_party_id: str | None


_cpo = Cpo.__table__.c  # type: ignore[attr-defined]
_token = CredentialToken.__table__.c  # type: ignore[attr-defined]
_peer = OcpiPeer.__table__.c  # type: ignore[attr-defined]

# Built once: one Core SELECT on the CPO's primary key and the unique token hash, columns only (no
# ORM objects, no statement construction per request). A header yields at most two candidates. Rows
# are read by position: CpoInfo's fields after its id, then the token's.
_CPO_COLUMNS = 7
_RESOLVE = (
    select(
        _cpo.status,
        _cpo.ocpi_version,
        _cpo.country_code,
        _cpo.party_id,
        _cpo.role,
        _cpo.name_prefix,
        _cpo.locations,
        _token.token_hash,
        _token.kind,
        _token.peer_id,
        _peer.country_code.label("peer_country_code"),
        _peer.party_id.label("peer_party_id"),
    )
    .select_from(
        Cpo.__table__.outerjoin(  # type: ignore[attr-defined]
            CredentialToken.__table__,  # type: ignore[attr-defined]
            and_(
                _token.cpo_id == _cpo.id,
                _token.token_hash.in_([bindparam("hash_1"), bindparam("hash_2")]),
                _token.revoked_at.is_(None),
            ),
        ).outerjoin(OcpiPeer.__table__, _peer.id == _token.peer_id)  # type: ignore[attr-defined]
    )
    .where(_cpo.id == bindparam("cpo_id"))
)


async def resolve(db: Database, cpo_id: int, candidates: list[str]) -> tuple[CpoInfo | None, Credential | None]:
    """The CPO row plus the live token (of this CPO only) the header carries, in one indexed read;
    (None, None) for an unknown CPO, (cpo, None) when no candidate is a live token of it."""
    hashes = {hash_token(t): t for t in candidates[:2]}
    listed = [*hashes, *hashes][:2] or ["", ""]  # no token: no hash matches ""
    rows = await read_rows(db, _RESOLVE, {"cpo_id": cpo_id, "hash_1": listed[0], "hash_2": listed[1]})
    if not rows:
        return None, None
    cpo = CpoInfo(cpo_id, *rows[0][:_CPO_COLUMNS])
    found = {row[_CPO_COLUMNS]: row[_CPO_COLUMNS:] for row in rows if row[_CPO_COLUMNS] is not None}
    if not found:
        return cpo, None
    best = min(found, key=listed.index)  # the header's best guess first
    token_hash, kind, peer_id, peer_country_code, peer_party_id = found[best]
    return cpo, Credential(hashes[token_hash], kind, peer_id, peer_country_code, peer_party_id)

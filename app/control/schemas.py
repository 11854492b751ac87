"""Pydantic models at the control-plane edge: request validation and response shapes (CONTRACT §1).

The OpenAPI document is generated from these same models, so what is documented is what is served.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import pycountry
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.lifecycle.models import CpoError, CpoStatus, Progress
from app.sim.config import MAX_TIME_SCALE

TTL_MIN, TTL_MAX, TTL_DEFAULT = 60, 604800, 3600
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
_PARTY_RE = re.compile(r"^[A-Z0-9]{3}$")


class BundleRole(StrEnum):
    cpo = "cpo"
    emsp = "emsp"


class Simulation(BaseModel):
    """How the CPO's simulated chargers live (fixed at create)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    time_scale: float = Field(
        default=1.0,
        gt=0,
        le=MAX_TIME_SCALE,
        allow_inf_nan=False,
        description="Simulated seconds per real second of every charger: timestamps, meter values and the "
        "simulate actions' durations run this much faster (60: a 3-hour session in 3 minutes).",
    )
    background_activity: bool = Field(
        default=False,
        description="The CPO makes its own traffic once READY: drivers arrive, charge, idle and leave "
        "(the template's activity profile by the network's local hour, on the simulated clock).",
    )


class CreateCpoRequest(BaseModel):
    """Body of `POST /ocpi/cpos`. Strict JSON types; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)

    template: str = Field(min_length=1, max_length=64, description="Template slug (see the templates gallery).")
    country_code: str = Field(description="ISO 3166-1 alpha-2 country code (normalised upper-case).")
    party_id: str = Field(description="3-char OCPI party id `[A-Z0-9]` (normalised upper-case); mangled on collision.")
    name_prefix: str = Field(min_length=1, max_length=64, description="Label carried by every identity of this CPO.")
    role: BundleRole = Field(default=BundleRole.cpo, description="OCPI role this party takes.")
    ocpi_version: Literal["2.2.1", "2.1.1"] = Field(default="2.2.1", description="OCPI version of the peer.")
    seed: int | None = Field(
        default=None,
        ge=SEED_MIN,
        le=SEED_MAX,
        description="Same seed + template + overrides ⇒ byte-identical network. Null ⇒ random.",
    )
    ttl_seconds: int | None = Field(
        default=TTL_DEFAULT,
        ge=TTL_MIN,
        le=TTL_MAX,
        description="Auto-destroy after N seconds (default 3600); explicit null ⇒ never.",
    )
    overrides: dict[str, Any] | None = Field(
        default=None, description="Only `locations` and `chargers_per_location`, integers within the template caps."
    )
    simulation: Simulation = Field(
        default_factory=Simulation, description="Time scale and background activity of the simulated chargers."
    )

    @field_validator("role", mode="before")
    @classmethod
    def _role_case(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("country_code")
    @classmethod
    def _country(cls, v: str) -> str:
        code = v.upper()
        if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
            raise ValueError("must be a real ISO 3166-1 alpha-2 country code")
        return code

    @field_validator("party_id")
    @classmethod
    def _party(cls, v: str) -> str:
        code = v.upper()
        if not _PARTY_RE.match(code):
            raise ValueError("must be exactly 3 characters [A-Z0-9]")
        return code

    @field_validator("name_prefix")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.isprintable():
            raise ValueError("must contain printable characters only")
        return v


class UpdateCpoRequest(BaseModel):
    """Body of `PATCH /ocpi/cpos/{cpo_id}`: move the TTL deadline of a live CPO."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ttl_seconds: int | None = Field(
        ge=TTL_MIN, le=TTL_MAX, description="New lifetime counted from now (60–604800 s); null ⇒ never expires."
    )


class PartyScope(BaseModel):
    country_code: str
    party_id: str
    role: Literal["CPO", "EMSP"]


class RoamHelper(BaseModel):
    credentials_payload: dict[str, Any] = Field(description="This CPO's Credentials object, as the eMSP enters it.")
    curl_snippet: str = Field(description="Shell-safe curl command performing the registration POST.")


class CpoAcceptedResponse(BaseModel):
    cpo_id: str
    party: PartyScope
    party_id_requested: str | None = Field(
        default=None,
        description="The party_id you asked for, when it was taken in your org and `party.party_id` is the "
        "collision-free one chosen instead; null when you got the one you asked for.",
    )
    name_prefix: str
    template: str
    template_version: int
    token_a: str = Field(description="OCPI Token A. Returned here only, never again.")
    ocpi_peer_url: str
    roam_helper: RoamHelper | None
    workflow_run_id: str | None
    status: CpoStatus
    status_url: str
    destroy_url: str
    expires_at: datetime | None


class ChargerState(StrEnum):
    """A charger's connection to the CSMS (the `charger.status` column)."""

    BOOTING = "BOOTING"  # connected, BootNotification or first StatusNotification pending
    ONLINE = "ONLINE"  # booted and reported its connectors' status
    OFFLINE = "OFFLINE"  # not connected (never was, disconnected, or its API process went silent)
    DETACHED = "DETACHED"  # deliberately disconnected (the `detach` action)


class ChargerCounts(BaseModel):
    """How many of a CPO's chargers are in each state, counted in the database."""

    online: int
    offline: int
    booting: int
    detached: int


class CpoStatusResponse(BaseModel):
    cpo_id: str
    status: CpoStatus
    status_url: str
    workflow_run_id: str | None
    error: CpoError | None
    progress: Progress | None
    chargers: ChargerCounts | None = Field(
        default=None,
        description="Once READY: the chargers by live state, counted in the database (`progress.chargers_online` "
        "is then the same live count). Null in any other status.",
    )
    provisioned_at: datetime | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class Topology(BaseModel):
    locations: int
    chargers: int
    evses: int
    connectors: int


class CpoSummary(BaseModel):
    cpo_id: str
    party: PartyScope
    name_prefix: str
    template: str
    template_version: int
    seed: int
    status: CpoStatus
    ocpi_peer_url: str
    topology: Topology
    report_url: str
    status_url: str
    destroy_url: str
    expires_at: datetime | None


class CpoDetail(CpoSummary):
    created_at: datetime
    updated_at: datetime
    registered_peers: int = Field(description="Completed OCPI handshakes (registered eMSP peers).")
    ocpi_version: str
    overrides: dict[str, int] | None
    simulation: Simulation


class CpoList(BaseModel):
    data: list[CpoSummary]
    total: int
    page: int
    limit: int


class CapsOut(BaseModel):
    min: int
    max: int


class TemplateCapsOut(BaseModel):
    locations: CapsOut
    chargers_per_location: CapsOut


class TemplateOut(BaseModel):
    slug: str
    version: int
    description: str
    locations: int
    chargers_per_location: int = Field(description="Default chargers per location (`overrides` may change it).")
    chargers: int
    caps: TemplateCapsOut
    ocpp_versions: list[str]
    power_types: list[str]


class TemplateList(BaseModel):
    data: list[TemplateOut]
    total: int


class ReportOut(BaseModel):
    cpo_id: str
    markdown: str
    chargers: ChargerCounts | None = Field(
        default=None, description="The chargers by live state (as in the Markdown); null once the CPO has ended."
    )


class DeleteResponse(BaseModel):
    cpo_id: str
    status: CpoStatus
    status_url: str


class HttpError(BaseModel):
    detail: str


class CodedHttpError(BaseModel):
    detail: str
    code: Literal["workflow_backend_unavailable", "party_namespace_exhausted"]


class QuotaExceeded(BaseModel):
    detail: str
    code: Literal["quota_exceeded"]
    quota: Literal["live_cpos", "live_chargers"]
    limit: int


class TemplateNotFound(BaseModel):
    detail: str
    template: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: list[ValidationIssue]


class Charger(BaseModel):
    identity: str = Field(description="OCPP charge point identity (unique within the CPO; the Basic-auth username).")
    location_id: str
    evse_uids: list[str] = Field(description="OCPI EVSE uids of this charger, in OCPP EVSE order.")
    vendor: str
    model: str
    ocpp_version: Literal["1.6", "2.0.1"]
    state: ChargerState
    last_boot_at: datetime | None = Field(description="When the CSMS last accepted its BootNotification.")
    last_seen_at: datetime | None = Field(description="Last frame, or last keep-alive of the API process holding it.")


class ChargerList(BaseModel):
    data: list[Charger]
    total: int
    page: int
    limit: int


class ChargerConnection(BaseModel):
    url: str = Field(description="WebSocket URL of this charger on the CSMS: `ws(s)://…/ocpp/{cpo_id}/{identity}`.")
    subprotocol: Literal["ocpp1.6", "ocpp2.0.1"]
    username: str = Field(description="HTTP Basic username (OCPP security profile 1): the identity.")
    password: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="HTTP Basic password. Present only for a token with scope `cpos:write`.",
    )


class ChargerDetail(Charger):
    connection: ChargerConnection


class OcppLogEntry(BaseModel):
    id: int
    timestamp: datetime
    direction: Literal["in", "out"] = Field(description="`in`: charger → CSMS; `out`: CSMS → charger.")
    message_type: int = Field(description="2 CALL, 3 CALLRESULT, 4 CALLERROR, 0 unparseable frame.")
    message_id: str | None
    action: str | None = Field(description="The CALL's action (results carry the action of the CALL they answer).")
    payload: Any = Field(description="The frame as JSON when it parses, else its (possibly truncated) text.")


class OcppLogPage(BaseModel):
    data: list[OcppLogEntry]
    total: int
    page: int
    limit: int

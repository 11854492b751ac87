"""The one place a Temporal client is built from Settings (API gateway, workers, /readyz).

Plain gRPC to a local or self-hosted frontend by default; TLS (server CA, mTLS client certificate,
server name) and an API key for a secured cluster or Temporal Cloud. Certificates are read when the
process starts, so a wrong path stops it with a message naming the variable, not at the first RPC.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig, TLSConfig

from app.settings import ConfigurationError, Settings

_PEM_MARKER = "-----BEGIN "


def _pem(field: str, value: str) -> bytes:
    """`value` is the PEM text itself, or the path of a file holding it."""
    if value.lstrip().startswith(_PEM_MARKER):
        return value.encode()
    variable = f"CPOLAB_{field.upper()}"
    try:
        data = Path(value).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{variable}: cannot read {value!r} ({exc.strerror or exc})") from None
    if _PEM_MARKER.encode() not in data:
        raise ConfigurationError(f"{variable}: {value!r} is not a PEM file")
    return data


def tls_config(settings: Settings) -> TLSConfig | None:
    """The TLS settings of the connection, or None for plain gRPC. ConfigurationError when a
    certificate or key cannot be read, or only one half of the client pair is set."""
    cert, key = settings.temporal_tls_client_cert, settings.temporal_tls_client_key
    if bool(cert) != bool(key):
        raise ConfigurationError(
            "CPOLAB_TEMPORAL_TLS_CLIENT_CERT and CPOLAB_TEMPORAL_TLS_CLIENT_KEY must be set together"
        )
    wanted = (
        settings.temporal_tls
        or cert
        or settings.temporal_tls_server_ca
        or settings.temporal_tls_server_name
        or settings.temporal_api_key
    )
    if not wanted:
        return None
    return TLSConfig(
        server_root_ca_cert=_pem("temporal_tls_server_ca", settings.temporal_tls_server_ca)
        if settings.temporal_tls_server_ca
        else None,
        domain=settings.temporal_tls_server_name or None,
        client_cert=_pem("temporal_tls_client_cert", cert) if cert else None,
        client_private_key=_pem("temporal_tls_client_key", key) if key else None,
    )


async def connect(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    lazy: bool = False,
    retry_config: RetryConfig | None = None,
) -> Client:
    """A client for settings.temporal_address / temporal_namespace with the configured TLS and API key.
    `lazy`: connect at the first call (the API must start while Temporal is down)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings) or False,
        api_key=settings.temporal_api_key or None,
        runtime=runtime,
        lazy=lazy,
        retry_config=retry_config,
    )

"""Process configuration, read once from the environment (12-factor, embedded defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

DEV_JWT_SECRET = "cpolab-dev-secret-change-me-in-production"


@dataclass(frozen=True)
class Settings:
    database_url: str
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    jwt_secret: str
    public_base_url: str
    status_query_timeout_s: float
    temporal_rpc_timeout_s: float


@lru_cache
def get_settings() -> Settings:
    env = os.environ.get
    return Settings(
        database_url=env("CPOLAB_DATABASE_URL", "sqlite+aiosqlite:///./var/cpolab.db"),
        temporal_address=env("CPOLAB_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        temporal_namespace=env("CPOLAB_TEMPORAL_NAMESPACE", "default"),
        task_queue=env("CPOLAB_TASK_QUEUE", "provisioning"),
        jwt_secret=env("CPOLAB_JWT_SECRET", DEV_JWT_SECRET),
        # Used to build absolute URLs (ocpi_peer_url); empty = derive from the request's Host.
        public_base_url=env("CPOLAB_PUBLIC_BASE_URL", "").rstrip("/"),
        status_query_timeout_s=float(env("CPOLAB_STATUS_QUERY_TIMEOUT", "1.0")),
        temporal_rpc_timeout_s=float(env("CPOLAB_TEMPORAL_RPC_TIMEOUT", "3.0")),
    )

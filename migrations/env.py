"""Alembic environment: the same migrations on SQLite (aiosqlite) and Postgres (asyncpg).

`app.store.migrate` hands a live connection in `config.attributes["connection"]`; the `alembic` CLI
(autogenerate, `alembic check`) gets none, and connects with CPOLAB_DATABASE_URL itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from app.store.db import make_engine, metadata

config = context.config


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate writes plain SQLAlchemy types, so a revision never depends on sqlmodel internals."""
    if kind == "type" and isinstance(obj, AutoString):
        return "sa.String()"
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure_and_run(connection: Connection) -> None:
    # Batch mode: SQLite cannot ALTER most things in place, so column changes there copy the table;
    # on Postgres the same operations run as plain ALTERs.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure_and_run)
            await conn.commit()
    finally:
        await engine.dispose()


def _url() -> str:
    from app.settings import Settings  # only the CLI path reads the environment

    return config.get_main_option("sqlalchemy.url") or Settings().database_url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _configure_and_run(connection)
else:
    asyncio.run(_run_with_own_engine(_url()))

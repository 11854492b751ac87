from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.emsp_peer import EmspPeer
from tests.stack import Stack

# OCPI code the tests run in-process (pushes) calls eMSP peers on loopback, like the stack does.
os.environ.setdefault("CPOLAB_EGRESS_ALLOW_LOOPBACK", "1")


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("stack")))
    try:
        await s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as c:
        yield c


@pytest.fixture(scope="session")
async def peer() -> AsyncIterator[EmspPeer]:
    """An independent eMSP (its own versions, details and receiver endpoints) on loopback."""
    p = await EmspPeer().start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client with no credentials, for OCPI calls with explicit Token headers."""
    async with httpx.AsyncClient(timeout=30) as c:
        yield c

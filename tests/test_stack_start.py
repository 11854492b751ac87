"""The test harness itself: a stack whose API port was taken between free_port() and the API's bind
(parallel test files race for ports) starts on a fresh one, and its workers get that one."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.stack import Stack


async def test_an_api_port_taken_meanwhile_is_replaced(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    taken = stack.api_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            await stack.start()
            assert stack.api_port != taken
            assert stack.env["CPOLAB_CSMS_URL"] == f"ws://127.0.0.1:{stack.api_port}/ocpp"
            async with stack.client() as client:
                assert (await client.get("/ocpi/cpos/templates")).status_code == 200
        finally:
            stack.stop()

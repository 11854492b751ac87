"""Per-CPO simulation settings on the whole stack: a CPO created with `simulation.time_scale` 60 runs
its chargers on a clock 60 times faster than the wall clock (its meter samples advance ~60 simulated
seconds per real second), and shows the settings on GET /ocpi/cpos/{id}."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from tests.charging_support import live_cpo
from tests.emsp_peer import EmspPeer
from tests.stack import Stack

UID = "SCALE00000000001"
SCALE = 60.0


def _ts(text: str) -> float:
    """An OCPP timestamp, or a stored (naive UTC) one, as POSIX seconds."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def test_time_scale_runs_the_chargers_faster(stack: Stack, peer: EmspPeer) -> None:
    simulation = {"time_scale": SCALE}
    async with live_cpo(stack, peer, party_id="TSC", seed=11, simulation=simulation) as cpo, stack.client() as control:
        cpo_id = cpo.id
        detail = (await control.get(f"/ocpi/cpos/{cpo_id}")).json()
        assert detail["simulation"] == {"time_scale": SCALE, "background_activity": False}
        await cpo.push_token(UID)

        listed = (await control.get(f"/ocpi/cpos/{cpo_id}/chargers")).json()["data"]
        charger = next(c for c in listed if c["ocpp_version"] == "1.6")
        identity = charger["identity"]
        # A long session (the car never fills up within the test): ~1 simulated hour.
        started = await control.post(
            f"/ocpi/cpos/{cpo_id}/chargers/{identity}/actions/start",
            json={"token_uid": UID, "target_kwh": 500, "soc_percent": 5},
        )
        assert started.status_code == 202, started.text

    samples: list[tuple[float, float]] = []  # (simulated time the charger stamped, real receipt time)
    deadline = asyncio.get_running_loop().time() + 60
    while len(samples) < 6 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1)
        rows = stack.query(
            "SELECT timestamp, payload FROM ocpp_log WHERE cpo_id = ? AND identity = ? AND direction = 'in' "
            "AND action = 'MeterValues' AND message_type = 2 ORDER BY id",
            cpo_id,
            identity,
        )
        samples = []
        for received, payload in rows:
            call = json.loads(str(payload))
            stamped = call[3]["meterValue"][0]["timestamp"]
            samples.append((_ts(stamped), _ts(str(received))))
    assert len(samples) >= 6, samples
    (sim0, real0), (sim1, real1) = samples[0], samples[-1]
    assert real1 - real0 >= 3, samples
    rate = (sim1 - sim0) / (real1 - real0)
    # Receipt times carry the link's jitter (and a loaded box's): the rate is ~60, not exactly.
    assert 0.6 * SCALE <= rate <= 1.5 * SCALE, (rate, samples)
    async with stack.client() as control:
        gone = await control.delete(f"/ocpi/cpos/{cpo_id}")
        assert gone.status_code in (200, 202)

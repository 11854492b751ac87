"""A charger pod: one long-running activity on a sim worker (task queue `charger-runtime`) that runs
the OCPP simulators of its chargers until cancelled.

Liveness is the heartbeat: a sim worker killed with SIGKILL stops beating, the heartbeat timeout
fires and Temporal retries the pod on another sim worker, whose chargers reconnect. Each attempt
connects with a higher generation (the attempt's scheduled time), so the CSMS refuses a zombie
attempt that is still running somewhere. Passwords are derived here from the server key, never
carried in the activity input (inputs are readable in the Web UI).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from temporalio import activity

from app.lifecycle.pods import GENERATION_HEADER, PodRun, SimChargerSpec
from app.security.passwords import charger_password
from app.sim.config import ChargerConfig, SimEvse, Tunables
from app.sim.ev import POWER_TYPES as SIM_POWER_TYPES
from app.sim.pod import Pod

# Heartbeat period of a pod (and the sim worker's heartbeat throttle): how soon a pod learns it was
# cancelled (DELETE), against ~4 ms of Temporal server CPU per heartbeat for every live pod.
HEARTBEAT_S = 5.0
# Admission toward the CSMS: 20 pods × 100 handshakes at once once timed out, retried and collapsed
# (10,000 chargers: < 300 online after 8 min, when each upgrade cost the CSMS ~13 ms of CPU). Now that
# concurrent upgrades share their lookups and claims (~5 ms per charger online), 25 per pod (500 in
# flight for stress-10k) keep the CSMS's batches full, and a patient opening handshake lets every
# attempt complete even on a loaded box.
POD_TUNABLES = Tunables(connect_concurrency=25, open_timeout=30.0)


def generation() -> int:
    """Milliseconds of this attempt's scheduled time: every retry of a pod is scheduled after the
    attempt it replaces, so a newer attempt always carries the higher number."""
    return int(activity.info().current_attempt_scheduled_time.timestamp() * 1000)


class ChargerRuntime:
    def __init__(self, charger_key: bytes, csms_url: str) -> None:
        self.charger_key = charger_key
        self.csms_url = csms_url.rstrip("/")

    def _config(self, run: PodRun, charger: SimChargerSpec, gen: int) -> ChargerConfig:
        return ChargerConfig(
            identity=charger.identity,
            password=charger_password(self.charger_key, run.cpo_id, charger.identity),
            ocpp_version=charger.ocpp_version,
            vendor=charger.vendor,
            model=charger.model,
            serial_number=charger.serial_number,
            firmware_version=charger.firmware_version,
            evses=tuple(
                SimEvse(
                    e.evse_id,
                    e.connectors,
                    _power_type(e.power_type),
                    e.max_voltage,
                    e.max_amperage,
                    e.max_electric_power,
                )
                for e in charger.evses
            ),
            csms_url=f"{self.csms_url}/{run.cpo_id}",
            headers=((GENERATION_HEADER, str(gen)),),
            time_scale=run.time_scale,
        )

    @activity.defn
    async def run_charger_pod(self, run: PodRun) -> None:
        """Runs until cancelled (teardown); returns only if the pod itself ends."""
        gen = generation()
        pod = Pod(
            [self._config(run, c, gen) for c in run.chargers],
            seed=run.cpo_id * 10_000 + run.index,
            tunables=POD_TUNABLES,
        )
        task = asyncio.create_task(pod.run())
        try:
            while not task.done():
                activity.heartbeat(pod.stats())
                await asyncio.wait({task}, timeout=HEARTBEAT_S)
            task.result()
        finally:
            if not task.done():  # cancelled (teardown, worker shutdown): every charger disconnects first
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task


def _power_type(ocpi: str) -> str:
    """The simulated car knows 1-phase, 3-phase and DC supplies: a 2-phase one charges like 1-phase."""
    return ocpi if ocpi in SIM_POWER_TYPES else "AC_1_PHASE"

"""The API calls workflows by name and never imports workflow, activity or simulator code: the names it
uses are the ones the workflows declare, and a fresh API process has none of that code loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from temporalio import workflow

from app.control import charger_actions, charger_link
from app.lifecycle import models
from app.ocpi import commands
from tests.stack import ROOT, SECRET
from workflows.charger_link import ChargerDisconnectWorkflow
from workflows.cpo import CpoWorkflow
from workflows.ocpi_command import OcpiCommandWorkflow
from workflows.teardown import CpoTeardownWorkflow


def definition(cls: type) -> workflow._Definition:
    return workflow._Definition.must_from_class(cls)


def test_the_names_the_api_calls_are_the_ones_the_workflows_declare() -> None:
    cpo = definition(CpoWorkflow)
    assert cpo.name == models.CPO_WORKFLOW
    assert models.CPO_STATE_QUERY in cpo.queries
    assert models.CPO_EXTEND_TTL_UPDATE in cpo.updates
    assert models.CPO_DESTROY_SIGNAL in cpo.signals
    assert definition(CpoTeardownWorkflow).name == models.TEARDOWN_WORKFLOW
    assert definition(OcpiCommandWorkflow).name == commands.WORKFLOW == charger_actions.WORKFLOW
    assert definition(ChargerDisconnectWorkflow).name == charger_link.WORKFLOW


def test_an_api_process_loads_no_workflow_activity_or_simulator_code() -> None:
    probe = (
        "import json, sys, api; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('workflows', 'activities') "
        "or m.startswith('app.sim.') and m not in ('app.sim.config', 'app.sim.ev'))))"
    )
    env = {**os.environ, "CPOLAB_JWT_SECRET": SECRET}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []

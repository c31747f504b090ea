"""The world the notebook-level property tests run in, and valid parameter sets.

A checkout-like folder holds the sandbox environment (every address on loopback),
a small archive of records and a recovery folder; ``valid_given`` draws a value a
notebook's parameter must accept, from the documented forms, the notebook's own
defaults and its example file.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import strategies as st
from property_strategies import (
    EXAMPLES,
    ROOT,
    Given,
    as_raw,
    broken_values,
    valid_by_type,
    valid_values,
)

from opslib._config import NAMED_ENVIRONMENT_VARIABLE, load_environment
from opslib._notebook import NOTEBOOK_FOLDERS, ParameterSpec, runbook_name
from opslib._params import NAME_RULES

NOTEBOOKS = sorted(
    path
    for sub in NOTEBOOK_FOLDERS
    for path in (ROOT / "notebooks" / sub).glob("*.ipynb")
)
RUN_ENVIRONMENT = "sandbox"
# Records in the test archive: two of the sandbox, one of staging, one report.
GOOD_RECORDS = (
    "20261201T100000Z-api-down-INC-1-aaaa",
    "20261201T110000Z-auth-broken-INC-1-bbbb",
)
STAGING_RECORD = "20261202T100000Z-api-down-INC-2-cccc"
REPORT_RECORD = "20261203T100000Z-post-incident-report-INC-3-dddd"


@dataclass(frozen=True)
class World:
    archive: Path
    valid: Mapping[str, st.SearchStrategy[object]]
    broken: Mapping[str, st.SearchStrategy[object]]
    environments: Path

    def enter(self, patch: pytest.MonkeyPatch) -> None:
        """Point the environment lookup at this world; no named environment."""
        patch.setenv("RUNBOOK_ENVIRONMENTS", str(self.environments))
        patch.delenv(NAMED_ENVIRONMENT_VARIABLE, raising=False)
        # the same file read once: its YAML costs more than the rest of the checks
        patch.setattr(
            "opslib._runner.load_environment", functools.cache(load_environment)
        )


def build_world(base: Path) -> World:
    """Lay out the world's files under ``base``."""
    environments = base / "parameters" / "environments"
    environments.mkdir(parents=True)
    shutil.copy(ROOT / "parameters" / "environments" / "sandbox.yaml", environments)
    (base / ".sandbox").mkdir()
    (base / ".sandbox" / "secrets.env").write_text("")
    archive = base / "records"
    month = archive / "2026" / "12"
    month.mkdir(parents=True)
    for record_id, environment in [
        *((r, "sandbox") for r in GOOD_RECORDS),
        (STAGING_RECORD, "staging"),
        (REPORT_RECORD, "sandbox"),
    ]:
        runbook = record_id.split("-INC")[0].split("Z-", 1)[1]
        sidecar = {
            "id": record_id,
            "runbook": runbook,
            "environment": environment,
            "started_at": "2026-12-01T10:00:00.000Z",
        }
        (month / f"{record_id}.json").write_text(json.dumps(sidecar))
    recovery = base / "recovery"
    recovery.mkdir()
    a_file = base / "a-file.txt"
    a_file.write_text("not a folder")
    return World(
        archive,
        valid_values(str(recovery)),
        broken_values(str(recovery), str(base / "missing"), str(a_file)),
        environments,
    )


def seeds_of(
    notebook: Path, specs: Mapping[str, ParameterSpec]
) -> dict[str, list[object]]:
    """The notebook's defaults and its example file's values, by name."""
    seeds = {name: [spec.default] for name, spec in specs.items()}
    example = EXAMPLES / f"{runbook_name(notebook)}.yaml"
    if example.is_file():
        for name, value in (yaml.safe_load(example.read_text()) or {}).items():
            seeds.setdefault(name, []).append(value)
    # record ids name records of an archive; the test archive has others
    seeds.pop("record_ids", None)
    seeds.pop("environment", None)
    return seeds


@st.composite
def valid_given(
    draw: st.DrawFn, name: str, spec: ParameterSpec, world: World, seeds: list[object]
) -> Given:
    if name == "record_ids":
        value: object = draw(st.lists(st.sampled_from(GOOD_RECORDS), unique=True))
    elif name in NAME_RULES:
        value = draw(
            st.one_of(world.valid[name], *(st.sampled_from(seeds),) if seeds else ())
        )
    else:
        value = draw(st.one_of(valid_by_type(spec.type_name), st.sampled_from(seeds)))
    if draw(st.booleans()):
        return Given(name, draw(as_raw(value, spec.type_name)), raw=True, valid=True)
    return Given(name, value, raw=False, valid=True)

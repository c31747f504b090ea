"""Property: at the notebook level, apply=True without the right phrase changes nothing.

For every notebook that takes ``apply`` and ``confirm``: its code hands both to
the gate and nowhere else (read with ``ast``, no kernel), and generated parameter
sets with apply=True and a wrong or missing confirm are either refused by the
checks made before a kernel starts (naming ``confirm``) or, once accepted and
checked again as the notebook's setup cell does, cannot pass the gate for a plan
whose phrase differs. The right phrase, for contrast, does pass.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from property_strategies import (
    BOOL_WORDS,
    PROPERTY_SETTINGS,
    Given,
    go_together,
    Miss,
    near_misses,
    phrase_for,
)
from property_world import (
    NOTEBOOKS,
    RUN_ENVIRONMENT,
    World,
    build_world,
    seeds_of,
    valid_given,
)

from opslib._actions import (
    _APPLIERS,
    ActionPlan,
    ActionResult,
    apply_action,
    register_applier,
)
from opslib._config import Environment
from opslib._errors import ParameterError
from opslib._notebook import PARAMETERS_TAG, read_parameters, runbook_name
from opslib._params import validate_params
from opslib._runner import check_run_request

GATED = [
    path for path in NOTEBOOKS if {"apply", "confirm"} <= set(read_parameters(path))
]
ACTION = "property-notebook-write"
CALLS: list[ActionPlan] = []


def recording_applier(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    CALLS.append(plan)
    return ActionResult(plan, "applied", "recorded, nothing else", operator)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = build_world(tmp_path_factory.mktemp("confirm"))
    register_applier(ACTION, recording_applier)
    with pytest.MonkeyPatch.context() as patch:
        world.enter(patch)
        yield world
    _APPLIERS.pop(ACTION, None)


def code_cells(path: Path) -> list[ast.Module]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        ast.parse("".join(cell["source"]))
        for cell in cells
        if cell["cell_type"] == "code"
        and PARAMETERS_TAG not in cell.get("metadata", {}).get("tags", [])
    ]


def called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


@pytest.mark.parametrize("notebook", GATED, ids=runbook_name)
def test_the_notebook_hands_apply_and_confirm_to_the_gate_only(notebook: Path) -> None:
    """``apply`` and ``confirm`` are read in two places only: the setup cell's
    ``validate_params`` and the keyword of the same name of ``apply_action``;
    ``conclude_procedure`` may read ``apply`` too, to say in the verdict that a
    change was asked for and not made (it applies nothing)."""
    uses: list[tuple[str, str, str]] = []  # (what, call it is passed to, keyword)
    gate_calls = 0
    for tree in code_cells(notebook):
        parents = {
            child: node
            for node in ast.walk(tree)
            for child in ast.iter_child_nodes(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and called_name(node) == "apply_action":
                gate_calls += 1
            name = read_of_apply_or_confirm(node)
            if name is None:
                continue
            keyword = parents.get(node)
            call = parents.get(keyword) if keyword is not None else None
            if isinstance(keyword, ast.keyword) and isinstance(call, ast.Call):
                uses.append((name, called_name(call), keyword.arg or ""))
            else:
                uses.append((name, "no call", ast.unparse(parents.get(node, node))))
    assert gate_calls >= 1
    allowed = {
        ("apply", "validate_params", "apply"),
        ("confirm", "validate_params", "confirm"),
        ("params.apply", "apply_action", "apply"),
        ("params.confirm", "apply_action", "confirm"),
        ("params.apply", "conclude_procedure", "apply"),
    }
    stray = [use for use in uses if use not in allowed]
    assert not stray, stray
    assert {use[0] for use in uses} == {
        "apply",
        "confirm",
        "params.apply",
        "params.confirm",
    }


def read_of_apply_or_confirm(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name) and node.id in ("apply", "confirm"):
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and node.attr in ("apply", "confirm")
        and isinstance(node.value, ast.Name)
        and node.value.id == "params"
    ):
        return f"params.{node.attr}"
    return None


@dataclass(frozen=True)
class Attempt:
    givens: list[Given]
    phrase: str
    confirm: Miss | None  # None: confirm left out, so its default ""


@st.composite
def attempts(draw: st.DrawFn, notebook: Path, world: World) -> Attempt:
    specs = read_parameters(notebook)
    seeds = seeds_of(notebook, specs)
    others = [name for name in specs if name not in ("apply", "confirm")]
    chosen = draw(st.lists(st.sampled_from(others), unique=True)) if others else []
    givens = [draw(valid_given(n, specs[n], world, seeds.get(n, []))) for n in chosen]
    assume(go_together(runbook_name(notebook), specs, givens))
    if draw(st.booleans()):
        word = draw(st.sampled_from(BOOL_WORDS[True]))
        givens.append(Given("apply", word, raw=True, valid=True))
    else:
        givens.append(Given("apply", True, raw=False, valid=True))
    phrase = draw(phrase_for(RUN_ENVIRONMENT))
    how = draw(
        st.sampled_from(["near", "near", "near", "other", "empty", "missing", "exact"])
    )
    if how == "missing":
        return Attempt(givens, phrase, None)
    if how == "near":
        miss = draw(near_misses(phrase))
    elif how == "other":
        other = draw(phrase_for(RUN_ENVIRONMENT).filter(lambda text: text != phrase))
        miss = Miss(other, "other", False)
    else:
        miss = Miss(phrase if how == "exact" else "", how, False)
    givens.append(
        Given("confirm", miss.text, raw=draw(st.booleans()), valid=not miss.hostile)
    )
    return Attempt(givens, phrase, miss)


@pytest.mark.parametrize("notebook", GATED, ids=runbook_name)
def test_apply_without_the_phrase_is_refused_or_cannot_apply(
    notebook: Path, world: World
) -> None:
    specs = read_parameters(notebook)
    defaults = {name: spec.default for name, spec in specs.items()}
    seen: dict[str, int] = {}

    @PROPERTY_SETTINGS
    @given(attempts(notebook, world))
    def check(attempt: Attempt) -> None:
        CALLS.clear()
        kind = attempt.confirm.kind if attempt.confirm else "missing"
        try:
            request = check_run_request(
                notebook,
                {item.name: item.value for item in attempt.givens},
                raw=frozenset(item.name for item in attempt.givens if item.raw),
                environment=RUN_ENVIRONMENT,
                records_dir=world.archive,
            )
        except ParameterError as error:
            assert attempt.confirm is not None and attempt.confirm.hostile, error
            assert all(p.startswith("confirm: got ") for p in error.problems)
            seen["refused before a kernel"] = seen.get("refused before a kernel", 0) + 1
            return
        assert attempt.confirm is None or not attempt.confirm.hostile
        # the notebook's setup cell checks the same values again
        params = validate_params(**(defaults | request.values))
        assert params.apply is True
        plan = ActionPlan(
            action=ACTION,
            environment=request.environment.name,
            target="a generated target",
            summary="a generated plan",
            confirm_phrase=attempt.phrase,
        )
        result = apply_action(
            plan,
            environment=request.environment,
            apply=params.apply,
            confirm=params.confirm,
            operator="property-operator",
        )
        if kind == "exact":
            assert result.outcome == "applied" and CALLS == [plan]
        else:
            assert result.outcome == "refused" and CALLS == [], (kind, result.detail)
        seen[kind] = seen.get(kind, 0) + 1

    check()
    assert sum(seen.values()) >= 200
    assert seen.get("refused before a kernel", 0) >= 1 and seen.get("exact", 0) >= 1, (
        seen
    )


def test_every_notebook_that_takes_apply_takes_confirm() -> None:
    assert GATED
    for path in NOTEBOOKS:
        names = set(read_parameters(path))
        assert ("apply" in names) == ("confirm" in names), path

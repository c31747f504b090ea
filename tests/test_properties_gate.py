"""Property: the gate applies a plan only with apply, the exact phrase and, in
production, the environment named where the run started.

Plans, environments, apply flags, confirm texts (the phrase, near misses of it,
anything else) and the value of RUNBOOK_NAMED_ENVIRONMENT are generated; a
recording applier stands in for the real ones, so nothing leaves the process.
What the gate must answer is worked out from how each case was built.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from property_strategies import (
    ENVIRONMENT_NAMES,
    PROPERTY_SETTINGS,
    SPACES,
    TARGET,
    VERBS,
    free_text,
    near_misses,
    phrase_for,
)

from opslib._actions import (
    _APPLIERS,
    ActionPlan,
    ActionResult,
    apply_action,
    register_applier,
)
from opslib._config import NAMED_ENVIRONMENT_VARIABLE, Environment

RECORDED_ACTIONS = ("property-write", "property-purge", "property-refund")
CALLS: list[ActionPlan] = []


def recording_applier(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    CALLS.append(plan)
    return ActionResult(plan, "applied", "recorded, nothing else", operator)


@pytest.fixture(scope="module", autouse=True)
def recorder() -> Iterator[None]:
    for action in RECORDED_ACTIONS:
        register_applier(action, recording_applier)
    yield
    for action in RECORDED_ACTIONS:
        _APPLIERS.pop(action, None)


def environment_named(name: str) -> Environment:
    """An environment by name; its addresses are a closed loopback port, never used."""
    closed = "http://127.0.0.1:9"
    return Environment(
        name=name,
        platform_url=closed,
        cloudflare_api_url=closed,
        status_page_url=closed,
        account_id="property-account",
        worker_name="property-worker",
        d1_database_id="property-d1",
        d1_database_name="property-db",
        kv_namespaces={},
    )


@dataclass(frozen=True)
class Case:
    plan: ActionPlan
    gate_environment: str
    apply: bool
    confirm: str
    confirm_kind: str  # "exact", a near-miss kind, "empty" or "other"
    named: str | None
    phrase_names_environment: bool
    registered: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    environment = draw(
        st.one_of(st.just("production"), st.just("sandbox"), ENVIRONMENT_NAMES)
    )
    same_place = draw(st.integers(0, 9)) > 0
    gate_environment = (
        environment
        if same_place
        else draw(ENVIRONMENT_NAMES.filter(lambda name: name != environment))
    )
    names_environment = draw(st.integers(0, 9)) > 0
    if names_environment:
        phrase = draw(phrase_for(environment))
    else:
        phrase = draw(
            st.one_of(
                st.builds(lambda v, t: f"{v} {t}", st.sampled_from(VERBS), TARGET),
                st.builds(
                    lambda v, t: f"{v} {t} on {environment}",
                    st.sampled_from(VERBS),
                    TARGET,
                ),
                st.just(""),
            )
        )
    registered = draw(st.integers(0, 9)) > 0
    action = draw(
        st.sampled_from(RECORDED_ACTIONS)
        if registered
        else st.from_regex(r"unregistered-[a-z]{1,12}", fullmatch=True)
    )
    plan = ActionPlan(
        action=action,
        environment=environment,
        target=draw(TARGET),
        summary="a generated plan",
        before={"value": draw(st.integers())},
        undo="put the value back",
        confirm_phrase=phrase,
    )
    kind = draw(st.sampled_from(["exact", "exact", "near", "near", "empty", "other"]))
    if kind == "exact":
        confirm = phrase
    elif kind == "near" and phrase:
        miss = draw(near_misses(phrase))
        confirm, kind = miss.text, miss.kind
    elif kind == "other":
        confirm = draw(free_text(80).filter(lambda text: text != phrase))
    else:
        confirm, kind = "", "empty" if phrase else "exact"
    named = draw(
        st.one_of(
            st.none(),
            st.just(gate_environment),
            ENVIRONMENT_NAMES,
            st.sampled_from(SPACES).map(lambda space: gate_environment + space),
            st.just(gate_environment.upper()),
        )
    )
    return Case(
        plan,
        gate_environment,
        draw(st.booleans()),
        confirm,
        kind,
        named,
        names_environment,
        registered,
    )


def expected_outcome(case: Case) -> str:
    """What the gate must answer, from how the case was built."""
    production_named = case.named == case.gate_environment
    if case.plan.environment != case.gate_environment:
        return "refused"
    if not case.apply:
        return "dry-run"
    if not case.phrase_names_environment:
        return "refused"
    if case.gate_environment == "production" and not production_named:
        return "refused"
    if case.confirm_kind != "exact":
        return "refused"
    return "applied" if case.registered else "refused"


@PROPERTY_SETTINGS
@given(cases())
def test_a_plan_is_applied_only_with_apply_the_exact_phrase_and_a_named_production(
    case: Case,
) -> None:
    CALLS.clear()
    with pytest.MonkeyPatch.context() as patch:
        if case.named is None:
            patch.delenv(NAMED_ENVIRONMENT_VARIABLE, raising=False)
        else:
            patch.setenv(NAMED_ENVIRONMENT_VARIABLE, case.named)
        result = apply_action(
            case.plan,
            environment=environment_named(case.gate_environment),
            apply=case.apply,
            confirm=case.confirm,
            operator="property-operator",
        )

    expected = expected_outcome(case)
    assert result.outcome == expected, (result.detail, case)
    if expected == "applied":
        assert CALLS == [case.plan]
        assert result.changed_something
    else:
        assert CALLS == [], case
        assert not result.changed_something
    if expected == "refused" and case.apply:
        assert "nothing changed" in result.detail or "plan is for" in result.detail


@PROPERTY_SETTINGS
@given(st.sampled_from(RECORDED_ACTIONS), st.booleans(), free_text(80))
def test_a_plan_with_no_action_is_never_applied(
    action: str, apply: bool, confirm: str
) -> None:
    CALLS.clear()
    plan = ActionPlan("none", "sandbox", "property-worker", "nothing to do")
    result = apply_action(
        plan,
        environment=environment_named("sandbox"),
        apply=apply,
        confirm=confirm,
        operator="property-operator",
    )
    assert result.outcome == "not-needed"
    assert CALLS == []


@pytest.mark.parametrize(
    "confirm",
    [
        "property-write x in sandbox ",
        " property-write x in sandbox",
        "property-write x in sandbox\u00a0",
        "\u3000property-write x in sandbox",
    ],
)
def test_a_phrase_with_spaces_around_it_is_not_the_phrase(confirm: str) -> None:
    CALLS.clear()
    plan = ActionPlan(
        "property-write",
        "sandbox",
        "x",
        "a plan",
        confirm_phrase="property-write x in sandbox",
    )
    result = apply_action(
        plan,
        environment=environment_named("sandbox"),
        apply=True,
        confirm=confirm,
        operator="property-operator",
    )
    assert result.outcome == "refused"
    assert "does not match" in result.detail
    assert CALLS == []


def test_a_plan_whose_action_has_no_applier_is_refused_not_raised() -> None:
    plan = ActionPlan(
        "unregistered-action",
        "sandbox",
        "x",
        "a plan",
        confirm_phrase="unregistered-action x in sandbox",
    )
    result = apply_action(
        plan,
        environment=environment_named("sandbox"),
        apply=True,
        confirm=plan.confirm_phrase,
        operator="property-operator",
    )
    assert result.outcome == "refused"
    assert "no applier" in result.detail and "nothing changed" in result.detail

import dataclasses

from opslib import ActionPlan, gate_widget, load_environment


def noop_plan(environment):
    return ActionPlan(
        "none", environment.name, environment.worker_name, "nothing to do"
    )


def test_noop_plan_disables_the_button():
    environment = load_environment("sandbox")
    box = gate_widget(noop_plan(environment), environment=environment)
    assert box.children[2].disabled is True


def test_button_with_wrong_phrase_is_refused_by_the_gate():
    environment = load_environment("sandbox")
    plan = dataclasses.replace(
        noop_plan(environment),
        action="rollback",
        confirm_phrase="rollback x to y in sandbox",
    )
    box = gate_widget(plan, environment=environment)
    box.children[1].value = "rollback x to z in sandbox"
    box.children[2].click()
    assert [r.outcome for r in box.results] == ["refused"]

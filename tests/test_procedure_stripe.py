"""The stripe procedure end to end on the sandbox: reads beside Stripe, a refund
(dry run, refused, applied, over the charge, no undo) and a cancellation now or at
period end with D1 brought in line and ``runbook undo`` restoring D1 exactly."""

import pytest
from procedure_helpers import result_of, run

import opslib
from opslib import load_environment, run_notebook
from opslib._stripeaction import refund_idempotency_key

D1_TABLES = ("subscriptions", "users", "payment_history")


def query(env, sql, params=()):
    client = opslib.CloudflareClient(env)
    try:
        return client.d1_query(sql, list(params), read_only=False)[0]["results"]
    finally:
        client.close()


def dump(env):
    """Every row of the billing tables, each value as SQLite's literal."""
    found = {}
    for table in D1_TABLES:
        columns = [r["name"] for r in query(env, f"PRAGMA table_info({table})")]
        quoted = " || '|' || ".join(f"quote({c})" for c in columns)
        rows = query(env, f"SELECT {quoted} AS r FROM {table} ORDER BY 1")
        found[table] = [row["r"] for row in rows]
    return found


def stripe_state(env):
    """What a refund or cancellation changes in Stripe: refunds and subscriptions."""
    reader = opslib.StripeReader(env)
    try:
        active = reader.active_subscriptions()
        subs = {s["id"]: s["cancel_at_period_end"] for s in active}
        customers = {s["customer"] for s in active}
        refunded = {
            c["id"]: c["amount_refunded"]
            for customer in customers
            for c in reader.charges(customer)
        }
    finally:
        reader.close()
    return {"subscriptions": subs, "refunded": refunded}


def paid_charge(env):
    """A charge of a paid invoice, nothing refunded yet."""
    reader = opslib.StripeReader(env)
    try:
        invoice = reader.invoices(status="paid")[0]
        return reader.charge(invoice["charge"])
    finally:
        reader.close()


def paid_subscription(env):
    """An active paid subscription D1 and Stripe agree on, with its user."""
    return query(
        env,
        "SELECT s.stripe_subscription_id AS sub, s.user_id, u.subscription_tier "
        "FROM subscriptions s JOIN users u ON u.id = s.user_id "
        "WHERE s.status = 'active' AND s.plan_type = 'pro' "
        "AND s.cancel_at_period_end = 0 ORDER BY s.created_at LIMIT 1",
    )[0]


@pytest.fixture
def env(sandbox):
    sandbox.reset("healthy")
    return load_environment("sandbox")


def test_read_only_run_joins_subscriptions_with_users_and_changes_nothing(
    env, tmp_path
):
    before, stripe_before = dump(env), stripe_state(env)
    charge = paid_charge(env)
    record = run("stripe", tmp_path, incident_id="CHG-0", customer=charge["customer"])
    assert record.verdict["cause"] == "read-only"
    findings = {f["name"]: f for f in record.verdict["findings"]}
    active = query(
        env,
        "SELECT COUNT(*) AS n FROM subscriptions "
        "WHERE status = 'active' AND plan_type <> 'free'",
    )[0]["n"]
    assert findings["active-subscriptions"]["summary"].startswith(f"{active} active")
    assert set(findings["active-subscriptions"]["evidence"][0]) >= {"email", "tier"}
    kinds = {row["kind"] for row in findings["customer"]["evidence"]}
    assert kinds == {"subscription", "invoice", "charge"}
    open_invoices = query(
        env,
        "SELECT COUNT(DISTINCT stripe_invoice_id) AS n FROM payment_history "
        "WHERE status = 'failed'",
    )[0]["n"]
    assert findings["failed-payments"]["summary"].startswith(f"{open_invoices} unpaid")
    assert result_of(record)["outcome"] == "not-needed"
    assert dump(env) == before and stripe_state(env) == stripe_before


def test_customer_found_by_the_users_email(env, tmp_path):
    charge = paid_charge(env)
    email = query(
        env,
        "SELECT u.email FROM users u JOIN subscriptions s ON s.user_id = u.id "
        "WHERE s.stripe_customer_id = ?",
        [charge["customer"]],
    )[0]["email"]
    finding = opslib.check_customer(env, email)
    assert finding.facts["customer"] == charge["customer"]
    assert charge["id"] in {row["id"] for row in finding.evidence}


def test_refund_dry_run_changes_nothing_and_prints_the_phrase(env, tmp_path):
    charge = paid_charge(env)
    stripe_before = stripe_state(env)
    record = run(
        "stripe", tmp_path, operation="refund", charge=charge["id"], amount_cents=500
    )
    assert result_of(record)["outcome"] == "dry-run"
    phrase = f"refund 500 of {charge['amount']} refundable cents of {charge['id']} in sandbox"
    assert record.verdict["gated_step"]["confirm"] == phrase
    assert "-p amount_cents 500" in record.verdict["gated_step"]["command"]
    assert stripe_state(env) == stripe_before


def test_refund_with_a_wrong_phrase_is_refused(env, tmp_path):
    charge = paid_charge(env)
    stripe_before = stripe_state(env)
    record = run(
        "stripe",
        tmp_path,
        operation="refund",
        charge=charge["id"],
        apply=True,
        confirm=f"refund all of {charge['id']} in sandbox",
    )
    assert result_of(record)["outcome"] == "refused"
    assert stripe_state(env) == stripe_before


def test_partial_refund_applied_keeps_the_charge_before_and_cannot_be_undone(
    env, tmp_path
):
    charge = paid_charge(env)
    phrase = f"refund 700 of {charge['amount']} refundable cents of {charge['id']} in sandbox"
    record = run(
        "stripe",
        tmp_path,
        operation="refund",
        charge=charge["id"],
        amount_cents=700,
        apply=True,
        confirm=phrase,
    )
    result = result_of(record)
    assert result["outcome"] == "applied"
    assert result["plan"]["before"]["amount_refunded"] == 0
    assert result["plan"]["before"]["amount"] == charge["amount"]
    assert result["after"]["status"] == "ok"
    assert "cannot be undone" in record.verdict["next_action"]
    after = stripe_state(env)
    assert after["refunded"][charge["id"]] == 700

    undo = run("undo", tmp_path, record_id=record.id)
    assert undo.verdict["cause"] == "inconclusive"
    assert "refund cannot be undone" in undo.verdict["summary"]
    assert stripe_state(env) == after


def test_full_refund_takes_what_is_left(env, tmp_path):
    charge = paid_charge(env)
    plan = opslib.plan_refund(env, charge["id"], 900)
    opslib.apply_action(plan, environment=env, apply=True, confirm=plan.confirm_phrase)
    rest = opslib.plan_refund(env, charge["id"])
    assert rest.changes[0]["to"] == charge["amount"]
    left = charge["amount"] - 900
    assert rest.confirm_phrase.startswith(f"refund {left} of {left} refundable cents")


def test_refund_above_what_is_left_plans_nothing(env, tmp_path):
    charge = paid_charge(env)
    stripe_before = stripe_state(env)
    too_much = charge["amount"] + 1
    record = run(
        "stripe",
        tmp_path,
        operation="refund",
        charge=charge["id"],
        amount_cents=too_much,
        apply=True,
        confirm=f"refund {too_much} of {too_much} refundable cents of {charge['id']} "
        "in sandbox",
    )
    assert record.verdict["cause"] == "inconclusive"
    assert (
        f"{charge['amount']} of {charge['amount']} cents are left"
        in (record.verdict["summary"])
    )
    assert stripe_state(env) == stripe_before


def test_sandbox_refuses_a_refund_above_the_charge_as_stripe_does(env):
    charge = paid_charge(env)
    reader = opslib.StripeReader(env)
    try:
        with pytest.raises(opslib.APIError, match="greater than unrefunded amount"):
            reader.create_refund(charge["id"], charge["amount"] + 1)
    finally:
        reader.close()


def test_cancel_now_brings_d1_in_line_and_undo_restores_it_exactly(env, tmp_path):
    sub = paid_subscription(env)
    before = dump(env)
    dry = run("stripe", tmp_path, operation="cancel", subscription=sub["sub"])
    assert result_of(dry)["outcome"] == "dry-run"
    assert dump(env) == before
    phrase = dry.verdict["gated_step"]["confirm"]
    assert phrase == f"cancel {sub['sub']} now in sandbox"

    applied = run(
        "stripe",
        tmp_path,
        operation="cancel",
        subscription=sub["sub"],
        apply=True,
        confirm=phrase,
    )
    result = result_of(applied)
    assert result["outcome"] == "applied" and result["after"]["status"] == "ok"
    assert result["plan"]["before"]["row"]["status"] == "active"
    assert (
        result["plan"]["before"]["user"]["subscription_tier"]
        == (sub["subscription_tier"])
    )
    row = query(
        env,
        "SELECT s.status, u.subscription_tier FROM subscriptions s "
        "JOIN users u ON u.id = s.user_id WHERE s.stripe_subscription_id = ?",
        [sub["sub"]],
    )
    assert row == [{"status": "canceled", "subscription_tier": "free"}]
    assert sub["sub"] not in stripe_state(env)["subscriptions"]

    undo_phrase = f"undo cancel-subscription of record {applied.id} in sandbox"
    refused = run("undo", tmp_path, record_id=applied.id, apply=True, confirm="undo it")
    assert result_of(refused)["outcome"] == "refused"
    undone = run(
        "undo", tmp_path, record_id=applied.id, apply=True, confirm=undo_phrase
    )
    assert result_of(undone)["outcome"] == "applied"
    assert result_of(undone)["after"]["status"] == "ok"
    assert dump(env) == before


def test_cancel_at_period_end_sets_the_flag_on_both_sides(env, tmp_path):
    sub = paid_subscription(env)
    before = dump(env)
    phrase = f"cancel {sub['sub']} at period end in sandbox"
    applied = run(
        "stripe",
        tmp_path,
        operation="cancel",
        subscription=sub["sub"],
        at_period_end=True,
        apply=True,
        confirm=phrase,
    )
    assert result_of(applied)["after"]["status"] == "ok"
    assert stripe_state(env)["subscriptions"][sub["sub"]] is True
    row = query(
        env,
        "SELECT status, cancel_at_period_end FROM subscriptions "
        "WHERE stripe_subscription_id = ?",
        [sub["sub"]],
    )
    assert row == [{"status": "active", "cancel_at_period_end": 1}]

    undo_phrase = f"undo cancel-subscription of record {applied.id} in sandbox"
    run("undo", tmp_path, record_id=applied.id, apply=True, confirm=undo_phrase)
    assert dump(env) == before


def test_cancel_is_refused_when_d1_changed_since_the_plan(env):
    sub = paid_subscription(env)
    plan = opslib.plan_cancellation(env, sub["sub"])
    query(
        env,
        "UPDATE subscriptions SET status = 'past_due' WHERE stripe_subscription_id = ?",
        [sub["sub"]],
    )
    result = opslib.apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert sub["sub"] in stripe_state(env)["subscriptions"]


def test_resend_plans_the_stripe_webhooks_action(sandbox, tmp_path):
    sandbox.reset("handler-timeout")
    record = run("stripe", tmp_path, operation="resend")
    result = result_of(record)
    assert result["action"] == "resend-webhook-events"
    assert result["outcome"] == "dry-run"
    assert result["plan"]["before"]["events"]
    events = result["plan"]["before"]["events"] + result["plan"]["before"]["excluded"]
    phrase = record.verdict["gated_step"]["confirm"]
    assert phrase.startswith(f"resend {len(events)} pending webhook event")
    assert "] to we_" in phrase


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"operation": "delete"}, "operation: got 'delete'"),
        ({"charge": "re_123"}, "charge: got 're_123'"),
        ({"subscription": "cus_1"}, "subscription: got 'cus_1'"),
        ({"amount_cents": -5}, "amount_cents: got -5"),
    ],
)
def test_bad_parameters_stop_before_the_kernel(env, tmp_path, parameters, message):
    with pytest.raises(opslib.ParameterError, match=message):
        run_notebook(
            "stripe", parameters=parameters, environment="sandbox", records_dir=tmp_path
        )


def test_refund_without_a_charge_is_refused_before_a_kernel(env, tmp_path):
    stripe_before = stripe_state(env)
    with pytest.raises(opslib.ParameterError, match="charge: empty, but operation"):
        run_notebook(
            "stripe",
            parameters={"operation": "refund"},
            environment="sandbox",
            records_dir=tmp_path,
        )
    assert not any(tmp_path.rglob("*.json"))
    assert stripe_state(env) == stripe_before
    # A notebook run without the runner (papermill, JupyterLab) checks it itself.
    with pytest.raises(opslib.ParameterError, match="charge: '' is empty"):
        opslib.require_stripe_target({"operation": "refund", "charge": ""})


def test_cancel_now_keeps_the_tier_of_a_user_with_another_paid_plan(env):
    sub = paid_subscription(env)
    query(
        env,
        "INSERT INTO subscriptions (id, user_id, stripe_subscription_id, "
        "stripe_customer_id, plan_type, status, current_period_start, "
        "current_period_end, cancel_at_period_end, created_at, updated_at) "
        "SELECT 'second-paid-row', user_id, 'sub_SecondPaidRow', stripe_customer_id, "
        "'enterprise', 'active', current_period_start, current_period_end, 0, "
        "created_at, updated_at FROM subscriptions WHERE stripe_subscription_id = ?",
        [sub["sub"]],
    )
    plan = opslib.plan_cancellation(env, sub["sub"])
    assert not any("subscription_tier" in c["what"] for c in plan.changes)
    result = opslib.apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied" and result.after.is_ok
    tier = query(
        env, "SELECT subscription_tier FROM users WHERE id = ?", [sub["user_id"]]
    )
    assert tier == [{"subscription_tier": sub["subscription_tier"]}]


def test_customer_view_shows_a_cancelled_subscription_too(env):
    sub = paid_subscription(env)
    plan = opslib.plan_cancellation(env, sub["sub"])
    opslib.apply_action(plan, environment=env, apply=True, confirm=plan.confirm_phrase)
    customer = plan.before["subscription"]["customer"]
    rows = opslib.check_customer(env, customer).evidence
    assert {"kind": "subscription", "id": sub["sub"], "status": "canceled"}.items() <= {
        k: v for r in rows if r["id"] == sub["sub"] for k, v in r.items()
    }.items()


def test_the_same_refund_command_run_again_is_refused(env, tmp_path):
    charge = paid_charge(env)
    dry = run(
        "stripe",
        tmp_path,
        incident_id="CHG-9",
        operation="refund",
        charge=charge["id"],
        amount_cents=600,
    )
    step = dry.verdict["gated_step"]
    assert "-p incident_id CHG-9" in step["command"]
    assert step["confirm"] == (
        f"refund 600 of {charge['amount']} refundable cents of {charge['id']} "
        "in sandbox"
    )
    again = {
        "incident_id": "CHG-9",
        "operation": "refund",
        "charge": charge["id"],
        "amount_cents": 600,
        "apply": True,
        "confirm": step["confirm"],
    }
    first = run("stripe", tmp_path, **again)
    assert result_of(first)["outcome"] == "applied"
    assert "-CHG-9-" in first.id
    second = run("stripe", tmp_path, **again)
    assert result_of(second)["outcome"] == "refused"
    assert stripe_state(env)["refunded"][charge["id"]] == 600


def test_a_refund_request_repeated_with_its_key_refunds_once(env):
    charge = paid_charge(env)
    plan = opslib.plan_refund(env, charge["id"], 300)
    key = refund_idempotency_key(plan.before, 300)
    assert key == f"refund:{charge['id']}:300:0"
    reader = opslib.StripeReader(env)
    try:
        first = reader.create_refund(charge["id"], 300, idempotency_key=key)
        second = reader.create_refund(charge["id"], 300, idempotency_key=key)
        with pytest.raises(opslib.ServiceError, match="idempotent"):
            reader.create_refund(charge["id"], 200, idempotency_key=key)
        refunded = reader.charge(charge["id"])["amount_refunded"]
    finally:
        reader.close()
    assert first["id"] == second["id"]
    assert refunded == 300


def test_applying_a_refund_sends_the_plan_key(env, monkeypatch):
    charge = paid_charge(env)
    plan = opslib.plan_refund(env, charge["id"], 400)
    sent = []
    original = opslib.StripeReader.create_refund

    def spy(self, charge_id, amount, **kwargs):
        sent.append(kwargs.get("idempotency_key"))
        return original(self, charge_id, amount, **kwargs)

    monkeypatch.setattr(opslib.StripeReader, "create_refund", spy)
    result = opslib.apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied"
    assert sent == [f"refund:{charge['id']}:400:0"]

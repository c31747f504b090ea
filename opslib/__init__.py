"""opslib: the library behind the manuscript platform's runbook notebooks.

Notebooks use only the names exported here. Each name is imported from its module
the first time it is used, so ``import opslib`` stays cheap: pandas, matplotlib,
httpx, the Stripe SDK, boto3, sqlglot, papermill and the widgets load only with the
runbook code that needs them. ``from opslib import X`` and ``opslib.X`` work as
with eager imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._actions import (
        ACTION_MIME,
        ActionPlan,
        ActionResult,
        apply_action,
        plan_rollback,
    )
    from ._apidown import (
        check_cloudflare_status,
        check_d1,
        check_deployments,
        check_kv_binding,
        check_secrets,
        diagnose_api_down,
        probe_api,
    )
    from ._auth import (
        check_cors,
        check_jwt_secret,
        check_login_rate_limits,
        check_session_cookie,
        check_sessions_kv,
        check_unverified_logins,
        probe_login,
    )
    from ._authactions import (
        plan_auth_repair,
        plan_clear_rate_limits,
        plan_verify_account,
        verify_auth_repair,
    )
    from ._authdiagnosis import (
        diagnose_auth_broken,
    )
    from ._backupaction import (
        diagnose_backups,
        plan_manual_backup,
    )
    from ._backups import (
        check_backup_bucket,
        check_backup_log,
        pick_backup,
    )
    from ._beforeimage import (
        records_archive,
    )
    from ._breach import (
        check_password_reset_support,
        check_sessions,
        check_worker_secrets,
        collect_evidence,
    )
    from ._breachaction import (
        breach_parameters,
        plan_breach_step,
        require_breach_target,
    )
    from ._checkitems import (
        check_d1_size,
        check_error_share,
        check_maintenance,
        check_r2_storage,
        check_registrations,
    )
    from ._checklist import (
        CHECKLISTS,
        checklist_table,
        conclude_checklist,
        manual_item,
    )
    from ._cloudflare import (
        CloudflareClient,
    )
    from ._config import (
        SECRET_VARIABLES,
        Environment,
        list_environments,
        load_environment,
    )
    from ._dbread import read_d1, rows_frame
    from ._dbwrite import (
        check_d1_write,
        plan_d1_write,
    )
    from ._deployverify import (
        check_smoke,
        decide_deploy,
        plan_deploy_rollback,
        watch_deploy,
    )
    from ._errorplot import (
        ErrorRatePlot,
        error_breakdown,
        plot_error_rate,
    )
    from ._errorrate import (
        check_error_deployments,
        check_invocations,
        check_live_version,
        check_missing_tables,
        check_route_errors,
        check_user_limits,
    )
    from ._errors import (
        ActionError,
        APIError,
        AuthError,
        ConfigError,
        ConfirmationError,
        OpslibError,
        ParameterError,
        RateLimitError,
        RunError,
        ServiceError,
        UnreachableError,
    )
    from ._errorverdict import (
        diagnose_high_error_rate,
    )
    from ._finding import (
        Finding,
        Status,
        check,
    )
    from ._impact import (
        count_affected_users,
    )
    from ._indexaction import (
        plan_create_index,
    )
    from ._latency import (
        LatencyHistogram,
        check_latency,
        plot_latency,
    )
    from ._latencyverdict import (
        diagnose_slow_responses,
    )
    from ._log import (
        enable_logging,
    )
    from ._mailchannels import (
        MailChannelsClient,
    )
    from ._params import (
        Params,
        validate_params,
    )
    from ._paymentaction import (
        plan_subscription_repair,
        verify_shown_plan,
    )
    from ._payments import (
        check_checkout_metadata,
        check_one_time_payments,
        check_shown_plan,
        check_stripe_subscriptions,
        check_subscription_rows,
        check_subscription_users,
        users_in_scope,
    )
    from ._paymentverdict import (
        diagnose_payment,
    )
    from ._platform import (
        PlatformClient,
        Probe,
    )
    from ._procedure import (
        RECENT_USERS_SQL,
        USER_COUNT_SQL,
        conclude_procedure,
        describe_record,
        find_record,
        plan_database_write,
        query_d1,
        test_accounts_sql,
        write_parameters,
    )
    from ._queryplan import (
        check_indexes,
        check_query_plans,
    )
    from ._queueaction import (
        plan_requeue,
    )
    from ._queuedrift import (
        check_status_drift,
    )
    from ._queues import (
        check_dead_letters,
        check_queue_backlog,
        check_queue_consumers,
    )
    from ._queuetrend import (
        check_backlog_trend,
        plot_backlog,
    )
    from ._queueverdict import (
        diagnose_queue_delays,
    )
    from ._r2 import (
        R2Client,
    )
    from ._r2recovery import (
        check_missing_objects,
        conclude_r2_recovery,
        find_recovery_sources,
        plan_reupload,
    )
    from ._records import (
        RecordQuery,
        format_verdict,
        list_records,
        load_record,
    )
    from ._report import (
        Report,
        build_report,
        conclude_report,
        load_report_records,
        referenced_records,
        write_report,
    )
    from ._reset import (
        check_email_vars,
        check_mail_provider,
        check_reset_limits,
        check_reset_precheck,
        check_reset_tokens,
        probe_reset_request,
    )
    from ._resetaction import (
        plan_password_reset,
    )
    from ._resetlimits import (
        plan_clear_reset_limits,
        plan_reset_repair,
    )
    from ._resetverdict import (
        diagnose_password_reset,
    )
    from ._restore import (
        RestoreReport,
        restore_dump,
    )
    from ._restoreaction import (
        plan_restore_into,
    )
    from ._restoreflow import (
        check_loss_window,
        check_restored_backup_log,
        check_restored_counts,
        check_restored_integrity,
        check_restored_schema,
        clean_up_restore,
        diagnose_restore,
        restore_backup,
    )
    from ._rollbackchoice import (
        choose_rollback_version,
        plan_version_rollback,
        verify_rollback,
    )
    from ._routetimings import (
        check_route_timings,
        check_startup,
        check_worker_times,
    )
    from ._runner import (
        RunRecord,
        run_notebook,
    )
    from ._sqlguard import (
        SQLRefusedError,
        classify_sql,
    )
    from ._statuspage import (
        StatusPageClient,
    )
    from ._stripe import (
        StripeReader,
    )
    from ._stripeaction import (
        plan_cancellation,
        plan_refund,
        plan_stripe_change,
        require_stripe_target,
        stripe_parameters,
    )
    from ._stripeops import (
        check_active_subscriptions,
        check_customer,
        check_failed_payments,
    )
    from ._team import (
        Team,
        load_team,
    )
    from ._undo import (
        check_restore,
        plan_undo,
    )
    from ._verdict import (
        CAUSES,
        VERDICT_MIME,
        Verdict,
    )
    from ._webhookaction import (
        plan_webhook_repair,
    )
    from ._webhooks import (
        check_api_version,
        check_pending_events,
        check_webhook_endpoints,
        check_webhook_logs,
        check_webhook_secret,
        probe_webhook,
    )
    from ._webhookverdict import (
        diagnose_stripe_webhooks,
    )
    from ._widgets import (
        gate_widget,
    )

# The module of every exported name; the block above mirrors it for type checkers
# (tests/test_exports.py keeps the two in step).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "_actions": (
        "ACTION_MIME",
        "ActionPlan",
        "ActionResult",
        "apply_action",
        "plan_rollback",
    ),
    "_apidown": (
        "check_cloudflare_status",
        "check_d1",
        "check_deployments",
        "check_kv_binding",
        "check_secrets",
        "diagnose_api_down",
        "probe_api",
    ),
    "_auth": (
        "check_cors",
        "check_jwt_secret",
        "check_login_rate_limits",
        "check_session_cookie",
        "check_sessions_kv",
        "check_unverified_logins",
        "probe_login",
    ),
    "_authactions": (
        "plan_auth_repair",
        "plan_clear_rate_limits",
        "plan_verify_account",
        "verify_auth_repair",
    ),
    "_authdiagnosis": ("diagnose_auth_broken",),
    "_backupaction": (
        "diagnose_backups",
        "plan_manual_backup",
    ),
    "_backups": (
        "check_backup_bucket",
        "check_backup_log",
        "pick_backup",
    ),
    "_beforeimage": ("records_archive",),
    "_breach": (
        "check_password_reset_support",
        "check_sessions",
        "check_worker_secrets",
        "collect_evidence",
    ),
    "_breachaction": (
        "breach_parameters",
        "plan_breach_step",
        "require_breach_target",
    ),
    "_checkitems": (
        "check_d1_size",
        "check_error_share",
        "check_maintenance",
        "check_r2_storage",
        "check_registrations",
    ),
    "_checklist": (
        "CHECKLISTS",
        "checklist_table",
        "conclude_checklist",
        "manual_item",
    ),
    "_cloudflare": ("CloudflareClient",),
    "_config": (
        "SECRET_VARIABLES",
        "Environment",
        "list_environments",
        "load_environment",
    ),
    "_dbread": (
        "read_d1",
        "rows_frame",
    ),
    "_dbwrite": (
        "check_d1_write",
        "plan_d1_write",
    ),
    "_deployverify": (
        "check_smoke",
        "decide_deploy",
        "plan_deploy_rollback",
        "watch_deploy",
    ),
    "_errorplot": (
        "ErrorRatePlot",
        "error_breakdown",
        "plot_error_rate",
    ),
    "_errorrate": (
        "check_error_deployments",
        "check_invocations",
        "check_live_version",
        "check_missing_tables",
        "check_route_errors",
        "check_user_limits",
    ),
    "_errors": (
        "ActionError",
        "APIError",
        "AuthError",
        "ConfigError",
        "ConfirmationError",
        "OpslibError",
        "ParameterError",
        "RateLimitError",
        "RunError",
        "ServiceError",
        "UnreachableError",
    ),
    "_errorverdict": ("diagnose_high_error_rate",),
    "_finding": (
        "Finding",
        "Status",
        "check",
    ),
    "_impact": ("count_affected_users",),
    "_indexaction": ("plan_create_index",),
    "_latency": (
        "LatencyHistogram",
        "check_latency",
        "plot_latency",
    ),
    "_latencyverdict": ("diagnose_slow_responses",),
    "_log": ("enable_logging",),
    "_mailchannels": ("MailChannelsClient",),
    "_params": (
        "Params",
        "validate_params",
    ),
    "_paymentaction": (
        "plan_subscription_repair",
        "verify_shown_plan",
    ),
    "_payments": (
        "check_checkout_metadata",
        "check_one_time_payments",
        "check_shown_plan",
        "check_stripe_subscriptions",
        "check_subscription_rows",
        "check_subscription_users",
        "users_in_scope",
    ),
    "_paymentverdict": ("diagnose_payment",),
    "_platform": (
        "PlatformClient",
        "Probe",
    ),
    "_procedure": (
        "RECENT_USERS_SQL",
        "USER_COUNT_SQL",
        "conclude_procedure",
        "describe_record",
        "find_record",
        "plan_database_write",
        "query_d1",
        "test_accounts_sql",
        "write_parameters",
    ),
    "_queryplan": (
        "check_indexes",
        "check_query_plans",
    ),
    "_queueaction": ("plan_requeue",),
    "_queuedrift": ("check_status_drift",),
    "_queues": (
        "check_dead_letters",
        "check_queue_backlog",
        "check_queue_consumers",
    ),
    "_queuetrend": (
        "check_backlog_trend",
        "plot_backlog",
    ),
    "_queueverdict": ("diagnose_queue_delays",),
    "_r2": ("R2Client",),
    "_r2recovery": (
        "check_missing_objects",
        "conclude_r2_recovery",
        "find_recovery_sources",
        "plan_reupload",
    ),
    "_records": (
        "RecordQuery",
        "format_verdict",
        "list_records",
        "load_record",
    ),
    "_report": (
        "Report",
        "build_report",
        "conclude_report",
        "load_report_records",
        "referenced_records",
        "write_report",
    ),
    "_reset": (
        "check_email_vars",
        "check_mail_provider",
        "check_reset_limits",
        "check_reset_precheck",
        "check_reset_tokens",
        "probe_reset_request",
    ),
    "_resetaction": ("plan_password_reset",),
    "_resetlimits": (
        "plan_clear_reset_limits",
        "plan_reset_repair",
    ),
    "_resetverdict": ("diagnose_password_reset",),
    "_restore": (
        "RestoreReport",
        "restore_dump",
    ),
    "_restoreaction": ("plan_restore_into",),
    "_restoreflow": (
        "check_loss_window",
        "check_restored_backup_log",
        "check_restored_counts",
        "check_restored_integrity",
        "check_restored_schema",
        "clean_up_restore",
        "diagnose_restore",
        "restore_backup",
    ),
    "_rollbackchoice": (
        "choose_rollback_version",
        "plan_version_rollback",
        "verify_rollback",
    ),
    "_routetimings": (
        "check_route_timings",
        "check_startup",
        "check_worker_times",
    ),
    "_runner": (
        "RunRecord",
        "run_notebook",
    ),
    "_sqlguard": (
        "SQLRefusedError",
        "classify_sql",
    ),
    "_statuspage": ("StatusPageClient",),
    "_stripe": ("StripeReader",),
    "_stripeaction": (
        "plan_cancellation",
        "plan_refund",
        "plan_stripe_change",
        "require_stripe_target",
        "stripe_parameters",
    ),
    "_stripeops": (
        "check_active_subscriptions",
        "check_customer",
        "check_failed_payments",
    ),
    "_team": (
        "Team",
        "load_team",
    ),
    "_undo": (
        "check_restore",
        "plan_undo",
    ),
    "_verdict": (
        "CAUSES",
        "VERDICT_MIME",
        "Verdict",
    ),
    "_webhookaction": ("plan_webhook_repair",),
    "_webhooks": (
        "check_api_version",
        "check_pending_events",
        "check_webhook_endpoints",
        "check_webhook_logs",
        "check_webhook_secret",
        "probe_webhook",
    ),
    "_webhookverdict": ("diagnose_stripe_webhooks",),
    "_widgets": ("gate_widget",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "ACTION_MIME",
    "APIError",
    "ActionError",
    "ActionPlan",
    "ActionResult",
    "AuthError",
    "CAUSES",
    "CHECKLISTS",
    "CloudflareClient",
    "ConfigError",
    "ConfirmationError",
    "Environment",
    "ErrorRatePlot",
    "Finding",
    "LatencyHistogram",
    "MailChannelsClient",
    "OpslibError",
    "ParameterError",
    "Params",
    "PlatformClient",
    "Probe",
    "R2Client",
    "RECENT_USERS_SQL",
    "RateLimitError",
    "RecordQuery",
    "Report",
    "RestoreReport",
    "RunError",
    "RunRecord",
    "SECRET_VARIABLES",
    "SQLRefusedError",
    "ServiceError",
    "Status",
    "StatusPageClient",
    "StripeReader",
    "Team",
    "USER_COUNT_SQL",
    "UnreachableError",
    "VERDICT_MIME",
    "Verdict",
    "__version__",
    "apply_action",
    "breach_parameters",
    "build_report",
    "check",
    "check_active_subscriptions",
    "check_api_version",
    "check_backlog_trend",
    "check_backup_bucket",
    "check_backup_log",
    "check_checkout_metadata",
    "check_cloudflare_status",
    "check_cors",
    "check_customer",
    "check_d1",
    "check_d1_size",
    "check_d1_write",
    "check_dead_letters",
    "check_deployments",
    "check_email_vars",
    "check_error_deployments",
    "check_error_share",
    "check_failed_payments",
    "check_indexes",
    "check_invocations",
    "check_jwt_secret",
    "check_kv_binding",
    "check_latency",
    "check_live_version",
    "check_login_rate_limits",
    "check_loss_window",
    "check_mail_provider",
    "check_maintenance",
    "check_missing_objects",
    "check_missing_tables",
    "check_one_time_payments",
    "check_password_reset_support",
    "check_pending_events",
    "check_query_plans",
    "check_queue_backlog",
    "check_queue_consumers",
    "check_r2_storage",
    "check_registrations",
    "check_reset_limits",
    "check_reset_precheck",
    "check_reset_tokens",
    "check_restore",
    "check_restored_backup_log",
    "check_restored_counts",
    "check_restored_integrity",
    "check_restored_schema",
    "check_route_errors",
    "check_route_timings",
    "check_secrets",
    "check_session_cookie",
    "check_sessions",
    "check_sessions_kv",
    "check_shown_plan",
    "check_smoke",
    "check_startup",
    "check_status_drift",
    "check_stripe_subscriptions",
    "check_subscription_rows",
    "check_subscription_users",
    "check_unverified_logins",
    "check_user_limits",
    "check_webhook_endpoints",
    "check_webhook_logs",
    "check_webhook_secret",
    "check_worker_secrets",
    "check_worker_times",
    "checklist_table",
    "choose_rollback_version",
    "classify_sql",
    "clean_up_restore",
    "collect_evidence",
    "conclude_checklist",
    "conclude_procedure",
    "conclude_r2_recovery",
    "conclude_report",
    "count_affected_users",
    "decide_deploy",
    "describe_record",
    "diagnose_api_down",
    "diagnose_auth_broken",
    "diagnose_backups",
    "diagnose_high_error_rate",
    "diagnose_password_reset",
    "diagnose_payment",
    "diagnose_queue_delays",
    "diagnose_restore",
    "diagnose_slow_responses",
    "diagnose_stripe_webhooks",
    "enable_logging",
    "error_breakdown",
    "find_record",
    "find_recovery_sources",
    "format_verdict",
    "gate_widget",
    "list_environments",
    "list_records",
    "load_environment",
    "load_record",
    "load_report_records",
    "load_team",
    "manual_item",
    "pick_backup",
    "plan_auth_repair",
    "plan_breach_step",
    "plan_cancellation",
    "plan_clear_rate_limits",
    "plan_clear_reset_limits",
    "plan_create_index",
    "plan_d1_write",
    "plan_database_write",
    "plan_deploy_rollback",
    "plan_manual_backup",
    "plan_password_reset",
    "plan_refund",
    "plan_requeue",
    "plan_reset_repair",
    "plan_restore_into",
    "plan_reupload",
    "plan_rollback",
    "plan_stripe_change",
    "plan_subscription_repair",
    "plan_undo",
    "plan_verify_account",
    "plan_version_rollback",
    "plan_webhook_repair",
    "plot_backlog",
    "plot_error_rate",
    "plot_latency",
    "probe_api",
    "probe_login",
    "probe_reset_request",
    "probe_webhook",
    "query_d1",
    "read_d1",
    "records_archive",
    "referenced_records",
    "require_breach_target",
    "require_stripe_target",
    "restore_backup",
    "restore_dump",
    "rows_frame",
    "run_notebook",
    "stripe_parameters",
    "test_accounts_sql",
    "users_in_scope",
    "validate_params",
    "verify_auth_repair",
    "verify_rollback",
    "verify_shown_plan",
    "watch_deploy",
    "write_parameters",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use, then keep it here."""
    if name == "__version__":
        value: Any = _package_version()
    elif name in _MODULE_OF:
        module = importlib.import_module(f".{_MODULE_OF[name]}", __name__)
        value = getattr(module, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("opslib")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _import_all() -> None:
    """Import every module behind the exported names (a kernel warming up ahead)."""
    for module in _EXPORTS:
        importlib.import_module(f".{module}", __name__)

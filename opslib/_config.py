"""Environments: where each system lives, and the secrets to reach it.

An environment is a YAML file under ``parameters/environments/<name>.yaml`` naming
base URLs and resource ids. Secrets never live there: they come from environment
variables, or from a git-ignored ``.env`` at the project root; an environment may
name a dotenv file of its own (``secrets_file``, used by the sandbox for its
throw-away token), which then wins. ``sandbox``
is the default everywhere; production is only ever used when asked for by name.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_ENVIRONMENT = "sandbox"
ENVIRONMENTS_VARIABLE = "RUNBOOK_ENVIRONMENTS"
# Set to an environment's name by whoever named it explicitly: `runbook run --env`
# does it for the kernel; an interactive session sets it when it is started. The
# gate needs it before it changes production.
NAMED_ENVIRONMENT_VARIABLE = "RUNBOOK_NAMED_ENVIRONMENT"

# Every environment variable that may hold a secret. The runner scrubs the values
# of all of them from records, whether or not a notebook used them.
SECRET_VARIABLES = (
    "CLOUDFLARE_API_TOKEN",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "MAILCHANNELS_API_KEY",
    "RUNBOOK_TEST_ACCOUNT_PASSWORD",
    "RUNBOOK_NEW_PASSWORD",
    "RUNBOOK_NEW_SECRET",
    # What `runbook serve-alerts` checks senders with.
    "RUNBOOK_ALERTS_SECRET",
    "RUNBOOK_ALERTS_STRIPE_SECRET",
    # Object storage holding the records (--records s3://...).
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    # The platform's own Worker secrets, in case an operator has them exported.
    "ANTHROPIC_API_KEY",
    "JWT_SECRET",
    "STRIPE_SECRET_KEY",
)
# Credentials for the services themselves. An environment with its own secrets
# file takes these from that file only.
SERVICE_CREDENTIALS = (
    "CLOUDFLARE_API_TOKEN",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "MAILCHANNELS_API_KEY",
    "RUNBOOK_TEST_ACCOUNT_PASSWORD",
)
MISSING_FILE_HINT = "start the sandbox with `runbook sandbox start`, which writes it"

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_PLACEHOLDER = re.compile(r"^<[A-Z0-9_]+>$")
_URL_KEYS = ("platform_url", "cloudflare_api_url", "status_page_url")
_OPTIONAL_URL_KEYS = ("mailchannels_url", "stripe_api_url", "r2_endpoint_url")
_REQUIRED_KEYS = (
    "name",
    *_URL_KEYS,
    "account_id",
    "worker_name",
    "d1_database_id",
    "d1_database_name",
    "kv_namespaces",
)
_OPTIONAL_KEYS = (
    "allowed_origins",
    "description",
    "mailchannels_url",
    "r2_buckets",
    "queues",
    "r2_endpoint_url",
    "required_secrets",
    "secrets_file",
    "stripe_api_url",
    "test_account_email",
    "timeout_s",
)


@dataclass(frozen=True)
class Environment:
    """One deployment of the platform and the names of its resources.

    Attributes:
        name: "sandbox", "staging" or "production".
        platform_url: base URL of the platform's own API.
        cloudflare_api_url: base URL of the Cloudflare API, ending in /client/v4.
        status_page_url: base URL of the Statuspage v2 API, ending in /api/v2.
        account_id: Cloudflare account id.
        worker_name: name of the main Worker script.
        d1_database_id: D1 database uuid.
        d1_database_name: D1 database name.
        kv_namespaces: KV binding name to namespace id (SESSIONS, CACHE_KV).
        r2_buckets: R2 binding name to bucket name.
        queues: queue binding name to queue name.
        required_secrets: Worker secret names the platform needs at run time.
        test_account_email: the dedicated test account runbooks may log in as.
        mailchannels_url: base URL of the MailChannels send API ("" when unset).
        stripe_api_url: base URL of the Stripe API ("" when unset).
        r2_endpoint_url: R2's S3-compatible endpoint ("" when unset).
        allowed_origins: browser origins the platform's CORS allow-list must hold.
        secrets: secret values found for this environment, by variable name.
        secrets_file: the environment's own dotenv file of credentials, if any.
        timeout_s: seconds each client waits for one answer; None leaves every
            client its own default (10 to 20 s).
    """

    name: str
    platform_url: str
    cloudflare_api_url: str
    status_page_url: str
    account_id: str
    worker_name: str
    d1_database_id: str
    d1_database_name: str
    kv_namespaces: Mapping[str, str]
    r2_buckets: Mapping[str, str] = field(default_factory=dict)
    queues: Mapping[str, str] = field(default_factory=dict)
    required_secrets: tuple[str, ...] = ()
    description: str = ""
    test_account_email: str = ""
    mailchannels_url: str = ""
    stripe_api_url: str = ""
    r2_endpoint_url: str = ""
    allowed_origins: tuple[str, ...] = ()
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    secrets_file: str = ""
    timeout_s: float | None = None

    def timeout(self, given: float | None, default: float) -> float:
        """Seconds a client waits: those the caller gave, else the environment's
        ``timeout_s``, else the client's own default."""
        if given is not None:
            return given
        return self.timeout_s if self.timeout_s is not None else default

    def secret(self, variable: str) -> str | None:
        """Return the value of a secret variable, or None when it is not set."""
        return self.secrets.get(variable) or None

    @property
    def is_production(self) -> bool:
        """True for the production environment."""
        return self.name == "production"


def find_environments_dir(*, environ: Mapping[str, str] | None = None) -> Path:
    """Locate the folder holding the environment YAML files.

    ``RUNBOOK_ENVIRONMENTS`` wins; otherwise the nearest ``parameters/environments``
    from the working directory upwards, then the one beside the installed package.

    Raises:
        ConfigError: when no such folder exists, or ``RUNBOOK_ENVIRONMENTS``
            names one that does not.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENVIRONMENTS_VARIABLE):
        chosen = Path(environ[ENVIRONMENTS_VARIABLE])
        if not chosen.is_dir():
            raise ConfigError(
                f"{ENVIRONMENTS_VARIABLE} is {str(chosen)!r}, which is not a folder; "
                "expected the folder holding <env>.yaml files (unset the variable "
                "to use parameters/environments of the project)"
            )
        return chosen

    here = Path.cwd().resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parent.parent):
        candidate = folder / "parameters" / "environments"
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        "no parameters/environments folder found from "
        f"{str(here)!r} upwards; run from the project checkout or set "
        f"{ENVIRONMENTS_VARIABLE} to the folder holding <env>.yaml files"
    )


def where_environments_are(*, environ: Mapping[str, str] | None = None) -> str:
    """Name the environments folder for a message, and how it was chosen."""
    environ = os.environ if environ is None else environ
    folder = str(find_environments_dir(environ=environ))
    if environ.get(ENVIRONMENTS_VARIABLE):
        return f"{folder!r} (set by {ENVIRONMENTS_VARIABLE})"
    return f"{folder!r} (set {ENVIRONMENTS_VARIABLE} to use another folder)"


def list_environments(*, environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the names of the environments defined, sorted."""
    folder = find_environments_dir(environ=environ)
    return sorted(path.stem for path in folder.glob("*.yaml"))


def load_environment(
    name: str = DEFAULT_ENVIRONMENT,
    *,
    environ: Mapping[str, str] | None = None,
    with_secrets: bool = True,
) -> Environment:
    """Load an environment definition and the secrets that go with it.

    Args:
        name: environment name; the file ``<name>.yaml`` must exist.
        environ: mapping to read variables from (defaults to ``os.environ``).
        with_secrets: False to read the definition alone (no secret is read,
            nothing is said about a missing secrets file), as starting a sandbox
            does: it writes secrets of its own.

    Returns:
        The environment, with the secrets found attached.

    Raises:
        ConfigError: for an unknown name, or a file with missing or unknown keys.
    """
    environ = os.environ if environ is None else environ
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ConfigError(
            f"environment: got {name!r}, expected a lower-case name such as "
            "'sandbox', 'staging' or 'production'"
        )

    folder = find_environments_dir(environ=environ)
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise ConfigError(
            f"environment: got {name!r}, expected one of: {known} (files in {folder})"
        )

    data = _read_yaml(path)
    _check_keys(data, path, name)
    secrets_file = _secrets_file(data.get("secrets_file"), folder)
    secrets = _collect_secrets(secrets_file, folder, environ) if with_secrets else {}
    return Environment(
        name=name,
        platform_url=data["platform_url"].rstrip("/"),
        cloudflare_api_url=data["cloudflare_api_url"].rstrip("/"),
        status_page_url=data["status_page_url"].rstrip("/"),
        account_id=str(data["account_id"]),
        worker_name=str(data["worker_name"]),
        d1_database_id=str(data["d1_database_id"]),
        d1_database_name=str(data["d1_database_name"]),
        kv_namespaces=dict(data["kv_namespaces"]),
        r2_buckets=dict(data.get("r2_buckets") or {}),
        queues=dict(data.get("queues") or {}),
        required_secrets=tuple(data.get("required_secrets") or ()),
        description=str(data.get("description") or ""),
        test_account_email=str(data.get("test_account_email") or ""),
        mailchannels_url=str(data.get("mailchannels_url") or "").rstrip("/"),
        stripe_api_url=str(data.get("stripe_api_url") or "").rstrip("/"),
        r2_endpoint_url=str(data.get("r2_endpoint_url") or "").rstrip("/"),
        allowed_origins=tuple(str(o) for o in data.get("allowed_origins") or ()),
        secrets=secrets,
        secrets_file=str(secrets_file or ""),
        timeout_s=_timeout_s(data.get("timeout_s"), path),
    )


def _timeout_s(value: object, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(
            f"{path}: timeout_s is {value!r}, expected a positive number of seconds"
        )
    return float(value)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings, got {type(data).__name__}"
        )
    return data


def _check_keys(data: dict[str, Any], path: Path, name: str) -> None:
    problems = [f"missing key {key!r}" for key in _REQUIRED_KEYS if key not in data]
    allowed = set(_REQUIRED_KEYS) | set(_OPTIONAL_KEYS)
    problems += [f"unknown key {key!r}" for key in sorted(data) if key not in allowed]
    if data.get("name") not in (None, name):
        problems.append(f"name is {data['name']!r} but the file is {name}.yaml")
    for key in (*_URL_KEYS, *_OPTIONAL_URL_KEYS):
        value = data.get(key)
        if value is not None and not re.match(r"^https?://[^\s/]+", str(value)):
            problems.append(f"{key} is {value!r}, expected an http(s) URL")
    problems += [
        f"{key} is still the placeholder {value!r}: put the real id in {path.name}"
        for key, value in _leaves(data)
        if isinstance(value, str) and _PLACEHOLDER.match(value)
    ]
    if name == "production":
        problems += [
            f"{key} must use https in production, got {data[key]!r}"
            for key in (*_URL_KEYS, *_OPTIONAL_URL_KEYS)
            if str(data.get(key, "https://")).startswith("http://")
        ]
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every value of a nested mapping, with its dotted key (kv_namespaces.SESSIONS)."""
    found: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found += _leaves(value, f"{name}.")
        else:
            found.append((name, value))
    return found


def _collect_secrets(
    secrets_file: Path | None, folder: Path, environ: Mapping[str, str]
) -> dict[str, str]:
    """Gather secret values for one environment.

    Normally: .env, then environment variables. An environment that names its own
    ``secrets_file`` (the sandbox) takes service credentials from that file only,
    so a production token exported in the shell is never sent to a local server,
    even when the file is missing; variables then supply only the rest (such as
    a new password an operator sets for a repair).
    """
    from dotenv import dotenv_values

    found = _read_dotenv(folder.parent.parent / ".env", dotenv_values)
    found.update({k: environ[k] for k in SECRET_VARIABLES if environ.get(k)})
    if secrets_file is not None:
        for name in SERVICE_CREDENTIALS:
            found.pop(name, None)
        if not secrets_file.is_file():
            logger.warning(
                "secrets file missing path=%s hint=%s", secrets_file, MISSING_FILE_HINT
            )
        found.update(_read_dotenv(secrets_file, dotenv_values))
    logger.debug("secrets found names=%s", sorted(found))
    return found


def _secrets_file(value: object, folder: Path) -> Path | None:
    if not value:
        return None
    path = Path(str(value))
    return path if path.is_absolute() else folder.parent.parent / path


def _read_dotenv(path: Path, reader: Any) -> dict[str, str]:
    if not path.is_file():
        return {}
    values = reader(path)
    return {k: v for k, v in values.items() if k in SECRET_VARIABLES and v}

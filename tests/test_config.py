from pathlib import Path

import pytest

from opslib import ConfigError, load_environment
from opslib._config import find_environments_dir, list_environments

SANDBOX_YAML = (
    Path(__file__).parent.parent / "parameters/environments/sandbox.yaml"
).read_text()


@pytest.fixture()
def env_dir(tmp_path, monkeypatch):
    """A project-like tree with its own environments folder."""
    folder = tmp_path / "parameters" / "environments"
    folder.mkdir(parents=True)
    text = SANDBOX_YAML.replace(
        "secrets_file: .sandbox/secrets.env", "secrets_file: own.env"
    )
    (folder / "sandbox.yaml").write_text(text)
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(folder))
    for name in ("CLOUDFLARE_API_TOKEN", "STRIPE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return folder


def test_project_environments_define_the_three_names():
    folder = find_environments_dir(environ={})
    assert {"sandbox", "staging", "production"} <= {
        p.stem for p in folder.glob("*.yaml")
    }


def test_load_environment_defaults_to_sandbox(env_dir):
    environment = load_environment()
    assert environment.name == "sandbox"
    assert environment.platform_url.startswith("http://127.0.0.1:")
    assert not environment.is_production


def test_unknown_environment_names_the_known_ones(env_dir):
    with pytest.raises(ConfigError, match=r"got 'prod', expected one of: sandbox"):
        load_environment("prod")


@pytest.mark.parametrize("name", ["", "Production", "../etc", "a b", 42])
def test_malformed_environment_name_is_refused(env_dir, name):
    with pytest.raises(ConfigError, match="environment: got"):
        load_environment(name)


def test_production_with_placeholders_is_refused():
    with pytest.raises(ConfigError, match="placeholder '<CF_ACCOUNT_ID>'"):
        load_environment("production", environ={})


def test_unknown_and_missing_keys_are_all_reported(env_dir):
    (env_dir / "broken.yaml").write_text("name: broken\nplatfrom_url: http://x\n")
    with pytest.raises(ConfigError) as caught:
        load_environment("broken")
    assert "unknown key 'platfrom_url'" in str(caught.value)
    assert "missing key 'worker_name'" in str(caught.value)


def test_production_refuses_plain_http(env_dir):
    text = SANDBOX_YAML.replace("name: sandbox", "name: production")
    (env_dir / "production.yaml").write_text(text)
    with pytest.raises(ConfigError, match="must use https in production"):
        load_environment("production")


def test_secrets_come_from_variables_and_dotenv(env_dir, monkeypatch):
    text = SANDBOX_YAML.replace("name: sandbox", "name: plain")
    (env_dir / "plain.yaml").write_text(
        text.replace("secrets_file: .sandbox/secrets.env", "")
    )
    (env_dir.parent.parent / ".env").write_text(
        "STRIPE_API_KEY=rk_test_fromdotenv\nUNRELATED=x\n"
    )
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "token-from-variable")
    environment = load_environment("plain")
    assert environment.secret("CLOUDFLARE_API_TOKEN") == "token-from-variable"
    assert environment.secret("STRIPE_API_KEY") == "rk_test_fromdotenv"
    assert "UNRELATED" not in environment.secrets


def test_environment_secrets_file_wins_over_variables(env_dir, monkeypatch):
    (env_dir.parent.parent / "own.env").write_text(
        "CLOUDFLARE_API_TOKEN=sandbox-own-token\n"
    )
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "production-token-in-shell")
    assert (
        load_environment("sandbox").secret("CLOUDFLARE_API_TOKEN")
        == "sandbox-own-token"
    )


def test_secret_values_are_not_in_the_repr(env_dir, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "do-not-print-me")
    assert "do-not-print-me" not in repr(load_environment("sandbox"))


def test_list_environments_is_sorted(env_dir):
    (env_dir / "staging.yaml").write_text("name: staging\n")
    assert list_environments() == ["sandbox", "staging"]


def test_missing_secrets_file_never_falls_back_to_exported_credentials(
    env_dir, monkeypatch
):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "production-token-in-shell")
    monkeypatch.setenv("RUNBOOK_NEW_PASSWORD", "operator-supplied")
    environment = load_environment("sandbox")
    assert environment.secret("CLOUDFLARE_API_TOKEN") is None
    assert environment.secret("RUNBOOK_NEW_PASSWORD") == "operator-supplied"
    assert environment.secrets_file.endswith("own.env")


def test_nested_placeholders_are_refused(env_dir):
    text = SANDBOX_YAML.replace(
        "SESSIONS: 0f1e2d3c4b5a69788796a5b4c3d2e1f0", "SESSIONS: <SESSIONS_KV_ID>"
    )
    (env_dir / "sandbox.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match="kv_namespaces.SESSIONS is still the placeholder"
    ):
        load_environment("sandbox")

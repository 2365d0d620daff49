"""Settings: defaults of the API contract, and invalid values that stop the start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from db.roles import role_of
from server.services import export_development_jwt_secret, export_service_urls, resolve_admin_database_url
from server.settings import PLACEHOLDER_JWT_SECRETS, Settings, SettingsError, load_settings
from tests.conftest import TEST_DATA_DIR, _free_port

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_contract(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "development")
    for name in ("BACKEND_PORT", "RATE_LIMIT_PER_MINUTE", "MAX_UPLOAD_BYTES", "LLM_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.backend_host == "0.0.0.0"
    assert settings.backend_port == 8000
    assert settings.rate_limit_per_minute == 60
    assert settings.rate_limit_per_hour == 1000
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.sse_heartbeat_seconds == 15
    assert settings.graceful_shutdown_timeout == 30
    assert settings.max_concurrent_streams == 4
    assert settings.llm_provider == "extractive"


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("BACKEND_PORT", "eighty")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "BACKEND_PORT" in str(raised.value)
    assert "eighty" in str(raised.value)


def test_secret_values_are_not_echoed(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "12")
    monkeypatch.setenv("BACKEND_WORKERS", "0")
    monkeypatch.setenv("LLM_API_KEY", "sk-very-secret")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "BACKEND_WORKERS" in str(raised.value)
    assert "sk-very-secret" not in str(raised.value)


@pytest.mark.parametrize("environment", ["production", "test"])
def test_placeholder_jwt_secret_is_refused_outside_development(monkeypatch, environment):
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "JWT_SECRET" in str(raised.value)


@pytest.mark.parametrize("environment", ["production", "test"])
def test_short_jwt_secret_is_refused_outside_development(monkeypatch, environment):
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("JWT_SECRET", "hunter2-abc")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("Invalid configuration")
    assert "JWT_SECRET" in message
    assert "hunter2-abc" not in message


def test_short_jwt_secret_is_accepted_in_development(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("JWT_SECRET", "short")
    assert load_settings().jwt_secret == "short"


def test_development_placeholder_is_replaced_by_a_kept_secret(monkeypatch, tmp_path):
    # Regression: with the published placeholder anyone reaching the server could sign tokens.
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert export_development_jwt_secret(load_settings())
    first = os.environ["JWT_SECRET"]
    assert first not in PLACEHOLDER_JWT_SECRETS
    assert len(first) >= 32
    assert (tmp_path / "jwt.secret").stat().st_mode & 0o077 == 0
    monkeypatch.delenv("JWT_SECRET")
    export_development_jwt_secret(load_settings())
    assert os.environ["JWT_SECRET"] == first


def test_server_start_stops_on_invalid_value(tmp_path):
    result = subprocess.run([sys.executable, "-m", "server"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "BACKEND_WORKERS": "many", "DATA_DIR": str(tmp_path)},
                            cwd=ROOT)
    assert result.returncode != 0
    assert "BACKEND_WORKERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_variable_not_json_names_the_variable(monkeypatch):
    # pydantic-settings parses list variables as JSON before validation, and its error escaped
    # as a traceback.
    monkeypatch.setenv("INGESTION_RETRY_DELAYS", "notjson")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("Invalid configuration")
    assert "INGESTION_RETRY_DELAYS" in message


def test_server_start_stops_on_list_variable_not_json(tmp_path):
    result = subprocess.run([sys.executable, "-m", "server"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "INGESTION_RETRY_DELAYS": "notjson",
                                 "DATA_DIR": str(tmp_path)},
                            cwd=ROOT)
    assert result.returncode != 0
    assert "INGESTION_RETRY_DELAYS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["server", "db.migrate", "server.launch"])
def test_start_stops_on_unreachable_database(server_env, module):
    port = _free_port()
    env = {key: value for key, value in server_env.items() if key != "DATABASE_ADMIN_URL"}
    env["DATABASE_URL"] = f"postgresql://ragplatform_app:pw-not-shown@127.0.0.1:{port}/rag"

    result = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True, timeout=120,
                            env=env, cwd=ROOT)

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert "pw-not-shown" not in output
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"PostgreSQL at 127.0.0.1:{port} is unreachable" in last_line
    assert "DATABASE_URL" in last_line


def test_exported_urls_migrate_as_owner(monkeypatch, service_urls):
    # The launcher exports DATABASE_URL (the application role) for its children; a child that saw
    # no DATABASE_ADMIN_URL migrated as that role and failed with "permission denied for schema public".
    for name in ("DATABASE_URL", "DATABASE_ADMIN_URL", "REDIS_URL"):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    parent = Settings(data_dir=str(TEST_DATA_DIR))

    database_url, _ = export_service_urls(parent)
    child = load_settings()

    assert child.database_url == database_url
    assert role_of(resolve_admin_database_url(child, child.database_url)) == role_of(service_urls["database_url"])
    assert role_of(service_urls["database_url"]) != role_of(database_url)

"""Settings: the configuration contract, validated once with one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from function.credentials import TokenSource
from function.errors import CredentialsError, SettingsError
from function.secret import Secret
from function.settings import Settings

BASE = {
    "CLOUDDC_ENDPOINT": "http://127.0.0.1:1",
    "CLOUDDC_AUTH_TOKEN": "token-value-1",
    "CLOUDDC_PROJECT_ID": "p0",
    "REAPER_EVENT_KEY": "event-key-0123456789",
    "REAPER_INBOUND_AUTH": "platform",
}
WHSEC = "whsec_" + "a" * 40


def test_defaults_follow_the_design() -> None:
    """Unset variables take the documented defaults."""
    settings = Settings.from_env(BASE)
    assert settings.scheduler == "local"
    assert settings.self_url == "http://127.0.0.1:8080/"
    assert settings.delay_service_url == "http://127.0.0.1:8089"
    assert (settings.check_delay, settings.check_max_delay, settings.deadline) == (15, 300, 7200)
    assert settings.dry_run is False
    assert settings.sink_url is None


def test_environment_is_read_and_arguments_win() -> None:
    """Every documented variable is read; explicit keyword arguments override the environment."""
    env = {
        **BASE,
        "PORT": "9000",
        "CLOUDDC_PROJECT_ID": "p1",
        "K_SINK": "http://127.0.0.1:2/",
        "REAPER_CHECK_DELAY": "1.5",
        "REAPER_CHECK_MAX_DELAY": "20",
        "REAPER_DEADLINE": "600",
        "REAPER_DRY_RUN": "yes",
    }
    settings = Settings.from_env(env, deadline=900.0)
    assert settings.self_url == "http://127.0.0.1:9000/"
    assert settings.project_id == "p1"
    assert settings.sink_url == "http://127.0.0.1:2/"
    assert (settings.check_delay, settings.check_max_delay, settings.deadline) == (1.5, 20, 900)
    assert settings.dry_run is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLOUDDC_AUTH_TOKEN": "x"}, "CLOUDDC_ENDPOINT is required"),
        ({**BASE, "CLOUDDC_ENDPOINT": "ftp://x"}, "CLOUDDC_ENDPOINT"),
        ({"CLOUDDC_ENDPOINT": "http://h"}, "CLOUDDC_AUTH_TOKEN"),
        ({**BASE, "REAPER_SCHEDULER": "carrier-pigeon"}, "expected one of"),
        ({**BASE, "REAPER_CHECK_DELAY": "soon"}, "number of seconds"),
        ({**BASE, "REAPER_CHECK_DELAY": "-1"}, "positive"),
        ({**BASE, "REAPER_CHECK_DELAY": "nan"}, "positive"),
        ({**BASE, "REAPER_CHECK_DELAY": "400"}, "REAPER_CHECK_MAX_DELAY must be"),
        ({**BASE, "REAPER_DEADLINE": "10"}, "REAPER_DEADLINE must be"),
        ({**BASE, "REAPER_DRY_RUN": "maybe"}, "true or false"),
        ({**BASE, "PORT": "eighty"}, "whole number"),
        ({**BASE, "PORT": "0"}, "positive whole number"),
        ({**BASE, "K_SINK": "nowhere"}, "K_SINK"),
        ({k: v for k, v in BASE.items() if k != "CLOUDDC_PROJECT_ID"}, "REAPER_ALLOWED_PROJECTS"),
        ({**BASE, "REAPER_ALLOWED_PROJECTS": "p1,*"}, "stands alone"),
        ({**BASE, "REAPER_ALLOWED_PROJECTS": "p1,../x"}, "not a project id"),
        ({k: v for k, v in BASE.items() if k != "REAPER_EVENT_KEY"}, "REAPER_EVENT_KEY"),
        ({**BASE, "REAPER_EVENT_KEY": "short"}, "at least 16"),
        ({**BASE, "REAPER_EVENT_KEY": "", "REAPER_EVENT_KEY_FILE": "/nonexistent/key"}, "cannot be read"),
        ({k: v for k, v in BASE.items() if k != "REAPER_INBOUND_AUTH"}, "REAPER_INBOUND_AUTH"),
        ({**BASE, "REAPER_INBOUND_AUTH": "platform,hope"}, "unknown method 'hope'"),
        ({**BASE, "REAPER_INBOUND_AUTH": "webhook"}, "REAPER_WEBHOOK_SECRET"),
        ({**BASE, "REAPER_INBOUND_AUTH": "webhook", "REAPER_WEBHOOK_SECRET": "whsec_!!"}, "whsec_"),
        ({**BASE, "REAPER_INBOUND_AUTH": "qstash"}, "QSTASH_CURRENT_SIGNING_KEY"),
        ({**BASE, "REAPER_INBOUND_AUTH": "oidc"}, "REAPER_OIDC_ALLOWED_EMAILS"),
        ({**BASE, "REAPER_MAX_MESSAGES_PER_REQUEST": "0"}, "positive"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(env: dict[str, str], message: str) -> None:
    """Each bad value is named in a single-line error."""
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env(env)
    assert "\n" not in str(caught.value)


def test_trust_settings_default_to_refusal(tmp_path: Path) -> None:
    """The allowlist defaults to CLOUDDC_PROJECT_ID alone; '*' is every project; the key may be a file."""
    assert Settings.from_env(BASE).allowed_projects == frozenset({"p0"})
    assert Settings.from_env({**BASE, "REAPER_ALLOWED_PROJECTS": " a , b "}).allowed_projects == frozenset(
        {"a", "b"}
    )
    assert Settings.from_env({**BASE, "REAPER_ALLOWED_PROJECTS": "*"}).allowed_projects is None
    key_file = tmp_path / "event-key"
    key_file.write_text("from-a-file-0123456789\n")
    env = {**BASE, "REAPER_EVENT_KEY": "", "REAPER_EVENT_KEY_FILE": str(key_file)}
    settings = Settings.from_env(env)
    assert settings.event_key == Secret("from-a-file-0123456789")
    webhook = Settings.from_env(
        {**BASE, "REAPER_INBOUND_AUTH": "Webhook, platform", "REAPER_WEBHOOK_SECRET": WHSEC}
    )
    assert webhook.inbound_auth == ("webhook", "platform")
    view = webhook.public_view()
    assert view["event_key"] == "***"
    assert view["webhook_secret"] == "***"
    assert view["allowed_projects"] == ["p0"]


def test_token_file_is_read_and_reread_when_it_changes(tmp_path: Path) -> None:
    """A mounted token file is read at start, and again when it is rotated or on demand."""
    path = tmp_path / "token"
    path.write_text("first-token\n")
    source = TokenSource(token_file=path)
    assert source.current() == Secret("first-token")
    path.write_text("second-token\n")
    assert source.reload() == Secret("second-token")
    path.write_text("third-token-longer\n")
    assert source.current() == Secret("third-token-longer")


def test_token_file_problems(tmp_path: Path) -> None:
    """A missing or empty token file is a settings error at start and retryable later."""
    with pytest.raises(SettingsError, match="cannot be read"):
        TokenSource(token_file=tmp_path / "absent")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(SettingsError, match="empty"):
        TokenSource(token_file=tmp_path / "empty")
    path = tmp_path / "token"
    path.write_text("a-token\n")
    source = TokenSource(token_file=path)
    path.unlink()
    with pytest.raises(CredentialsError):
        source.reload()
    with pytest.raises(SettingsError):
        TokenSource()


def test_fixed_token_reload_returns_it() -> None:
    """With a token from the environment, a reload (after 401) returns the same token."""
    secret = Secret("env-token-1")
    source = TokenSource(secret)
    assert source.reload() is secret
    assert repr(source) == "TokenSource(env)"
    assert hash(secret) == hash(Secret("env-token-1"))

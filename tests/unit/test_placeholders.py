"""Issue 27, shipped secrets that work: a deploy file's placeholder secret stops the start, naming it."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from function.errors import SettingsError
from function.placeholders import is_placeholder
from function.settings import Settings
from tests.unit.test_settings import BASE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines, as systemd's EnvironmentFile reads them."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def test_the_vm_env_files_webhook_secret_is_refused() -> None:
    """deploy/vm/reaper.env as shipped (its event key file aside): REAPER_WEBHOOK_SECRET is named."""
    shipped = env_file(DEPLOY / "vm" / "reaper.env")
    shipped.pop("REAPER_EVENT_KEY_FILE")
    with pytest.raises(SettingsError, match="REAPER_WEBHOOK_SECRET is the deploy files' placeholder"):
        Settings.from_env({**shipped, "REAPER_EVENT_KEY": secrets.token_hex(32)})


def test_functiongraphs_event_key_is_refused() -> None:
    """deploy/functiongraph/function.json's encrypted settings as shipped: REAPER_EVENT_KEY is named."""
    function = json.loads((DEPLOY / "functiongraph" / "function.json").read_text())
    shipped = json.loads(function["encrypted_user_data"])
    with pytest.raises(SettingsError, match=r"REAPER_EVENT_KEY .* placeholder"):
        Settings.from_env({**BASE, "REAPER_EVENT_KEY": shipped["REAPER_EVENT_KEY"]})


def test_a_placeholder_broker_password_is_refused_where_the_broker_is_used() -> None:
    """The RabbitMQ URL's "change-me" password stops a function that schedules through RabbitMQ only."""
    url = "amqp://reaper:change-me@127.0.0.1:5672/"
    with pytest.raises(SettingsError, match="REAPER_RABBITMQ_URL"):
        Settings.from_env({**BASE, "REAPER_SCHEDULER": "rabbitmq", "REAPER_RABBITMQ_URL": url})
    assert Settings.from_env({**BASE, "REAPER_RABBITMQ_URL": url}).scheduler == "local"


@pytest.mark.parametrize(
    "value",
    [
        "change-me",
        "CHANGE_ME_PLEASE",
        "replace-me-with-openssl-rand",
        "whsec_" + base64.b64encode(b"change-me-change-me-change-me-123").decode(),
    ],
)
def test_placeholders_are_recognised(value: str) -> None:
    """The spellings the deploy files and their readers use, also inside a webhook secret's bytes."""
    assert is_placeholder(value)


def test_real_secrets_are_not_placeholders() -> None:
    """Random keys and webhook secrets pass."""
    for _ in range(200):
        assert not is_placeholder(secrets.token_hex(32))
        assert not is_placeholder("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    assert not is_placeholder("whsec_not-base64!")

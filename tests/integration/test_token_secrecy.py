"""The IAM token never appears in a log line, an event, an error body or a repr — on every path."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path

import httpx
import pytest
from cloudevents.conversion import to_structured

from function import jsonlog, redaction
from function.credentials import TokenSource
from function.outbound import Call
from function.secret import Secret
from function.settings import Settings
from function.signing import EventSigner
from reaper.devtools.procs import free_port
from tests.conftest import (
    EVENT_KEY,
    TOKEN,
    WEBHOOK_SECRET,
    Emulator,
    FunctionFactory,
    Sink,
    expired,
    new_id,
    webhook_signed,
)

pytestmark = pytest.mark.integration


def test_token_absent_from_logs_events_and_bodies_on_every_path(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink, tmp_path: Path
) -> None:
    """Success, 401 (env and file token), hand-off failure and bad input all keep the token out."""
    wrong_env = "wrong-" + secrets.token_hex(24)
    wrong_file = "filetok-" + secrets.token_hex(24)
    token_file = tmp_path / "token"
    token_file.write_text(wrong_file + "\n")
    good = function_factory(REAPER_LOG_LEVEL="DEBUG")
    bad_env = function_factory(CLOUDDC_AUTH_TOKEN=wrong_env, REAPER_LOG_LEVEL="DEBUG")
    bad_file = function_factory(CLOUDDC_AUTH_TOKEN="", CLOUDDC_AUTH_TOKEN_FILE=str(token_file))
    no_handoff = function_factory(REAPER_DELAY_SERVICE_URL="http://127.0.0.1:9")
    http_target = function_factory(target="handle_http", signature="http", CLOUDDC_AUTH_TOKEN=wrong_env)

    ok, unauthorized, unauthorized_file, stuck, via_http = (emulator.add(new_id()) for _ in range(5))
    bodies = [
        good.send(expired(ok)).text,
        bad_env.send(expired(unauthorized)).text,
        bad_file.send(expired(unauthorized_file)).text,
        no_handoff.send(expired(stuck)).text,
        http_target.send(expired(via_http)).text,
        httpx.post(good.url, content=b"[]", headers={"content-type": "application/cloudevents+json"}).text,
    ]
    assert sink.result(ok)["type"] == "instance-terminated"
    for instance in (unauthorized, unauthorized_file, via_http):
        result = sink.result(instance)
        assert result["type"] == "instance-deletion-failed"
        assert result["data"]["reason"] == "unauthorized"
        assert result["data"]["http_status"] == 401
    # The file token was re-read once after the first 401: two reads, both 401, and no DELETE.
    assert [(c["call"], c["status"]) for c in emulator.touching(unauthorized_file)] == [("list", 401)] * 2

    logs = "".join(f.log() for f in (good, bad_env, bad_file, no_handoff, http_target))
    events = json.dumps(sink.events)
    assert "X-Auth-Token" not in logs
    for token in (TOKEN, wrong_env, wrong_file, EVENT_KEY):
        assert token not in logs
        assert token not in events
        assert all(token not in body for body in bodies)


def test_reprs_and_settings_view_mask_the_token(tmp_path: Path) -> None:
    """Secret, TokenSource and Settings never show the token through repr, str or the start-up view."""
    token = "tok-" + secrets.token_hex(20)
    secret = Secret(token)
    assert token not in repr(secret)
    assert token not in str(secret)
    assert token not in f"{secret}"
    event_key = "evk-" + secrets.token_hex(20)
    env = {
        "CLOUDDC_ENDPOINT": "http://127.0.0.1:1",
        "CLOUDDC_AUTH_TOKEN": token,
        "CLOUDDC_PROJECT_ID": "p",
        "REAPER_EVENT_KEY": event_key,
        "REAPER_EVENT_KEY_PREVIOUS": event_key + "-old",
        "REAPER_INBOUND_AUTH": "webhook",
        "REAPER_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    settings = Settings.from_env(env)
    for value in (token, event_key, WEBHOOK_SECRET):
        assert value not in repr(settings)
        assert value not in json.dumps(settings.public_view(), default=str)
    assert event_key not in repr(EventSigner(Secret(event_key)))
    (tmp_path / "t").write_text(token)
    assert token not in repr(TokenSource(token_file=tmp_path / "t"))
    call = Call("DELETE", "clouddc.invalid", "/v1/p/instances/i")
    TokenSource(secret).apply(call)
    assert call.headers["X-Auth-Token"] == token  # what is sent
    assert token not in repr(call)
    assert token not in str(call)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(secret)


def test_log_formatter_redacts_registered_secrets(caplog: pytest.LogCaptureFixture) -> None:
    """Even a careless log call that includes a token prints [REDACTED] instead."""
    token = "tok-" + secrets.token_hex(20)
    Secret(token)
    record = logging.makeLogRecord(
        {"msg": f"calling with {token}", "name": "reaper.x", "levelno": 20, "levelname": "INFO"}
    )
    record.__dict__["header"] = {"X-Auth-Token": token}
    line = jsonlog.JsonFormatter().format(record)
    assert token not in line
    assert redaction.REDACTED in line


def test_platform_token_from_request_header(emulator: Emulator, function_factory: FunctionFactory) -> None:
    """With REAPER_TOKEN_FROM_REQUEST, FunctionGraph's X-CFF-Auth-Token is used and never logged."""
    fn = function_factory(
        target="handle_http", signature="http", CLOUDDC_AUTH_TOKEN="", REAPER_TOKEN_FROM_REQUEST="true"
    )
    instance = emulator.add(new_id())
    headers, body = to_structured(expired(instance))
    answered = httpx.post(fn.url, content=body, headers={**headers, "X-CFF-Auth-Token": TOKEN})
    assert answered.status_code == 200
    assert [(c["call"], c["status"]) for c in emulator.touching(instance)] == [("list", 200), ("delete", 204)]
    missing = httpx.post(fn.url, content=body, headers=headers)
    assert missing.status_code == 503
    assert "X-CFF-Auth-Token" in missing.json()["error"]
    assert TOKEN not in fn.log()


def test_no_configured_secret_on_any_error_path(
    emulator: Emulator,
    function_factory: FunctionFactory,
    sink: Sink,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """401, 403, 5xx, timeout, refused connection, malformed body and an upstream echo: no configured
    secret (token, event key, webhook secret, a password in a URL) in any log line, result, answer or file."""
    sink_password = "sinkpw-" + secrets.token_hex(12)
    signing = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    settings = {
        "REAPER_INBOUND_AUTH": "webhook",
        "REAPER_WEBHOOK_SECRET": signing,
        "REAPER_HTTP_TIMEOUT": "1",
        "REAPER_MAX_RETRIES": "1",
        "REAPER_LOG_LEVEL": "DEBUG",
        "K_SINK": sink.url.replace("http://", f"http://reaper:{sink_password}@"),
    }
    fn = function_factory(target="handle_http", signature="http", **settings)
    refused = function_factory(CLOUDDC_ENDPOINT=f"http://127.0.0.1:{free_port()}", **settings)
    faults = {
        "forbidden-echo": {"delete": [{"status": 403, "echo": True}]},
        "server-error": {"delete": [{"status": 500}, {"status": 500}, {"status": 500}]},
        "timeout": {"delete": [{"delay": 1.5}, {"delay": 1.5}, {"delay": 1.5}]},
    }
    instances = {name: emulator.add(new_id(), faults=spec) for name, spec in faults.items()}
    answers = []
    for target, instance in [(fn, i) for i in instances.values()] + [(refused, new_id())]:
        headers, body = to_structured(expired(instance))
        answers.append(
            httpx.post(target.url, headers=webhook_signed(headers, body, signing), content=body, timeout=15)
        )
    unsigned_headers, unsigned_body = to_structured(expired(new_id()))
    answers.append(httpx.post(fn.url, headers=unsigned_headers, content=unsigned_body))  # 401
    answers.append(
        httpx.post(fn.url, headers={"content-type": "application/json"}, content=b'{"a": [}')
    )  # 400
    assert sorted({a.status_code for a in answers}) == [200, 400, 401]
    assert sink.result(instances["forbidden-echo"])["data"]["http_status"] == 403
    assert sink.result(instances["server-error"], timeout=30)["data"]["reason"] == "retries-exhausted"
    assert sink.result(instances["timeout"], timeout=30)  # the timed-out DELETE went through upstream

    written = b"".join(p.read_bytes() for p in tmp_path_factory.getbasetemp().rglob("*") if p.is_file())
    texts = [json.dumps(sink.events), *(a.text for a in answers), fn.log(), refused.log()]
    for secret in (TOKEN, EVENT_KEY, signing, sink_password):
        assert all(secret not in text for text in texts), secret[:6]
        assert secret.encode() not in written, secret[:6]

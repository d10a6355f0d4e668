"""Issue 24: outbound TLS trusts what httpx would (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``) plus
``REAPER_CA_BUNDLE``; a refused certificate says why, in the log line and in the result; every outbound
path honours ``*_PROXY``; secrets are redacted before a log line is serialized."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloudevents.http import CloudEvent

from function import jsonlog, outbound, redaction
from function.clouddc import CloudDCClient
from function.credentials import TokenSource
from function.credentials.iam import IamTokenSource
from function.errors import SettingsError
from function.outbound.keepalive import tls_context
from function.results import ResultSink
from function.schedulers.qstash import QStashScheduler
from function.secret import Secret
from function.settings import Settings
from tests.conftest import EVENT_KEY, PROJECT, FunctionFactory, Sink, expired, new_id
from tests.hostile import HostileServer, Reply, Seen, gzipped, listing, record, response
from tests.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean slate for the process-wide TLS context: no CA variables, built anew on first use."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REAPER_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    tls_context.cache_clear()
    yield monkeypatch
    tls_context.cache_clear()


@pytest.fixture
def tls_server(pki: tuple[ssl.SSLContext, Path]) -> Iterator[HostileServer]:
    server = HostileServer(lambda seen: Reply(response(200, {"ok": True})), tls=pki[0])
    yield server
    server.close()


def fetch(url: str) -> httpx.Response:
    with outbound.client(timeout=5) as client:
        return client.get(url)


def test_a_private_ca_is_refused_with_its_reason(
    trust: pytest.MonkeyPatch, tls_server: HostileServer
) -> None:
    """By default certifi's CAs alone: the test CA's certificate is refused, and the error says why."""
    with pytest.raises(httpx.ConnectError, match="certificate verify failed: unable to get local issuer"):
        fetch(tls_server.url)


def test_ssl_cert_file_is_trusted_as_httpx_trusts_it(
    trust: pytest.MonkeyPatch, tls_server: HostileServer, pki: tuple[ssl.SSLContext, Path]
) -> None:
    """``SSL_CERT_FILE`` names the CAs to trust, as it does for httpx."""
    trust.setenv("SSL_CERT_FILE", str(pki[1]))
    assert fetch(tls_server.url).json() == {"ok": True}


def test_ssl_cert_dir_is_trusted_as_httpx_trusts_it(
    trust: pytest.MonkeyPatch, tls_server: HostileServer, pki: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    """``SSL_CERT_DIR``: a directory of CA files named by their subject hash (OpenSSL's ``c_rehash``)."""
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pki[1])], capture_output=True, check=True, text=True
    ).stdout.strip()
    (tmp_path / f"{subject_hash}.0").write_bytes(pki[1].read_bytes())
    trust.setenv("SSL_CERT_DIR", str(tmp_path))
    assert fetch(tls_server.url).json() == {"ok": True}


def test_reaper_ca_bundle_adds_a_private_ca_to_the_public_ones(
    trust: pytest.MonkeyPatch, tls_server: HostileServer, pki: tuple[ssl.SSLContext, Path]
) -> None:
    """``REAPER_CA_BUNDLE`` adds to certifi's bundle rather than replacing it: public endpoints still
    verify (the store holds certifi's roots too) and the private one now does."""
    trust.setenv("REAPER_CA_BUNDLE", str(pki[1]))
    assert fetch(tls_server.url).json() == {"ok": True}
    assert tls_context().cert_store_stats()["x509_ca"] > 100


def test_a_ca_bundle_that_cannot_be_read_refuses_to_start(tmp_path: Path) -> None:
    """A typo in REAPER_CA_BUNDLE is one clear line at start, not a TLS failure on the first call."""
    env = {
        "CLOUDDC_ENDPOINT": "https://clouddc.example",
        "CLOUDDC_PROJECT_ID": PROJECT,
        "CLOUDDC_AUTH_TOKEN": "tok-123456",
        "REAPER_EVENT_KEY": EVENT_KEY,
        "REAPER_INBOUND_AUTH": "platform",
    }
    for bad in (tmp_path / "missing.pem", tmp_path / "empty.pem"):
        (tmp_path / "empty.pem").write_text("not a certificate")
        with pytest.raises(SettingsError, match="REAPER_CA_BUNDLE"):
            Settings.from_env({**env, "REAPER_CA_BUNDLE": str(bad)})
    with pytest.raises(SettingsError, match="REAPER_HTTP_DEADLINE"):
        Settings.from_env({**env, "REAPER_HTTP_TIMEOUT": "10", "REAPER_HTTP_DEADLINE": "5"})


@pytest.mark.integration
def test_through_the_function_a_refused_certificate_is_named_and_a_bundle_mends_it(
    function_factory: FunctionFactory, pki: tuple[ssl.SSLContext, Path], sink: Sink
) -> None:
    """Against CloudDC behind a private CA: without the CA the result is ``certificate-error`` with the
    reason, also in the log line; with ``REAPER_CA_BUNDLE`` the same instance is read and deleted."""
    instance = new_id("tls")
    clouddc = HostileServer(
        lambda seen: Reply(
            response(204, b"", length=False)
            if seen.method == "DELETE"
            else response(200, listing(record(instance)))
        ),
        tls=pki[0],
    )
    try:
        refused = function_factory(
            target="handle_http", signature="http", CLOUDDC_ENDPOINT=clouddc.url, REAPER_MAX_RETRIES="1"
        )
        assert refused.send(expired(instance)).json()["calls"] == ["READ certificate-error"]
        result = sink.result(instance)
        assert result["type"] == "instance-deletion-failed"
        assert result["data"]["error_code"] == "certificate-error"
        assert "certificate verify failed: unable to get local issuer" in result["data"]["error_msg"]
        failed = [line for line in refused.log_lines() if line["message"] == "clouddc call failed"]
        assert "certificate verify failed" in failed[0]["error"]
        trusted = function_factory(
            target="handle_http", signature="http", CLOUDDC_ENDPOINT=clouddc.url, REAPER_CA_BUNDLE=str(pki[1])
        )
        assert trusted.send(expired(instance)).json()["calls"] == ["READ 200 running", "DELETE 204"]
    finally:
        clouddc.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """A forward proxy on loopback named by HTTP_PROXY: it answers every request itself."""

    def answer(seen: Seen) -> Reply:
        if seen.path.endswith("/v3/auth/tokens"):
            token = {"token": {"expires_at": "2099-01-01T00:00:00.000000Z"}}
            return Reply(response(201, token, headers=[("X-Subject-Token", "proxied-token-value")]))
        return Reply(response(202, {"ok": True}))

    server = HostileServer(answer)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("http_proxy", server.url)
    yield server
    server.close()


def _event() -> CloudEvent:
    return CloudEvent(
        {"type": "instance-terminated", "source": "/tests", "id": new_id()}, {"instance_id": "i"}
    )


def test_every_outbound_path_goes_through_the_environments_proxy(proxy: HostileServer) -> None:
    """The sink (its own keep-alive transport), IAM, QStash and any ``outbound.client`` call go through
    HTTP_PROXY: the proxy sees each request in absolute form, for a host that does not resolve."""
    sink = ResultSink("http://sink.reaper.invalid/results", timeout=5)
    source = IamTokenSource(
        "http://iam.reaper.invalid", "domain", "user", Secret("iam-password-1"), PROJECT, timeout=5
    )
    qstash = QStashScheduler(
        base_url="http://qstash.reaper.invalid",
        token=Secret("qstash-token-1"),
        target_url="http://function.reaper.invalid/",
    )
    try:
        sink.emit(_event())
        assert source.token.get().reveal() == "proxied-token-value"
        qstash.schedule(_event(), 5.0, "key-1")
    finally:
        sink.close()
        source.close()
        qstash.close()
    with outbound.client(timeout=5) as client:
        client.get("http://anything.reaper.invalid/x")
    hosts = [seen.headers.get("host") for seen in proxy.requests()]
    assert hosts == [
        "sink.reaper.invalid",
        "iam.reaper.invalid",
        "qstash.reaper.invalid",
        "anything.reaper.invalid",
    ]


@pytest.fixture
def escaped_secret() -> str:
    secret = 'pa"ss\\word\nwith-' + new_id()
    redaction.register_secret(secret)
    return secret


def test_a_secret_json_would_escape_is_redacted_in_every_value(escaped_secret: str) -> None:
    """A secret with a quote, a backslash and a newline: redacted in the message, in a value, in a nested
    list and in the text of an object the line can only ``str()`` — not left escaped in the line."""

    class Opaque:
        def __str__(self) -> str:
            return f"opaque({escaped_secret})"

    record = logging.makeLogRecord(
        {
            "name": "reaper.test",
            "msg": f"said {escaped_secret}",
            "detail": f"x {escaped_secret} y",
            "nested": {"list": [escaped_secret]},
            "object": Opaque(),
        }
    )
    line = jsonlog.JsonFormatter().format(record)
    escaped = json.dumps(escaped_secret)[1:-1]
    assert escaped not in line
    assert escaped_secret not in line
    assert 'pa\\"ss' not in line
    document = json.loads(line)
    assert document["message"] == f"said {redaction.REDACTED}"
    assert document["detail"] == f"x {redaction.REDACTED} y"
    assert document["nested"] == {"list": [redaction.REDACTED]}
    assert document["object"] == f"opaque({redaction.REDACTED})"


def test_clouddc_through_a_proxy_reads_a_gzip_answer_as_the_direct_path_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind HTTP_PROXY the CloudDC client reads the same raw bytes as without one: a gzip listing is
    decoded once (httpx's decoding would leave the header claiming gzip over plain bytes), within the cap."""
    body = gzipped(listing(record("i-proxied")))
    proxy = HostileServer(lambda seen: Reply(response(200, body, headers=[("Content-Encoding", "gzip")])))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    api = CloudDCClient("http://clouddc.reaper.invalid", TokenSource(Secret("tok-proxied-1")), timeout=5)
    try:
        answer, records, _ = api.list_instances(PROJECT, instance_ids=("i-proxied",))
        assert (answer.status, [r["id"] for r in records]) == (200, ["i-proxied"])
        assert proxy.requests()[0].headers["host"] == "clouddc.reaper.invalid"
    finally:
        api.close()
        proxy.close()

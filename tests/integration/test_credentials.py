"""Credentials that outlive a day: IAM tokens refreshed, AK/SK signing equal to the SDK's, metadata keys."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from function.credentials import from_settings
from function.credentials.aksk import sign_request
from function.credentials.iam import IamTokenSource
from function.credentials.refreshing import Refreshing
from function.errors import CredentialsError, SettingsError
from function.outbound import Call
from function.secret import Secret
from function.settings import Settings
from reaper.devtools.procs import Process, free_port, reaper_command
from tests.conftest import PROJECT, FunctionFactory, Sink, new_id, wait_until

pytestmark = pytest.mark.integration
AK = "AKREAPERTEST0123456"
SK = "sk-" + "s" * 37
IAM_PASSWORD = "iam-password-" + "p" * 20


class _Keys:
    def __init__(self, ak: str, sk: str) -> None:
        self.ak, self.sk = ak, sk


segments = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="/?#\x00"), min_size=1, max_size=12)
    | st.from_regex(r"\A[A-Za-z0-9_.~-]{1,20}\Z"),
    min_size=1,
    max_size=5,
)
queries = st.lists(
    st.tuples(st.from_regex(r"\A[a-z_]{1,10}\Z"), st.text(st.characters(codec="utf-8"), max_size=15)),
    max_size=4,
)


@settings(max_examples=250, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    path=segments,
    trailing=st.booleans(),
    query=queries,
    body=st.one_of(st.just(b""), st.binary(max_size=200), st.text(max_size=80).map(str.encode)),
    json_type=st.booleans(),
    security_token=st.one_of(st.none(), st.from_regex(r"\A[A-Za-z0-9_-]{10,60}\Z")),
    project=st.one_of(st.none(), st.from_regex(r"\A[0-9a-f]{32}\Z")),
    when=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
)
def test_signer_equals_the_sdk(
    method: str,
    path: list[str],
    trailing: bool,
    query: list[tuple[str, str]],
    body: bytes,
    json_type: bool,
    security_token: str | None,
    project: str | None,
    when: datetime,
) -> None:
    """For generated requests, reaper's Authorization header is exactly huaweicloudsdkcore's."""
    encoded = "/".join(quote(segment, safe="-_.~") for segment in path) + ("/" if trailing else "")
    url = httpx.URL("https://clouddc.cn-east-3.myhuaweicloud.com/" + encoded)
    headers = {"Content-Type": "application/json"} if json_type else {}
    request = Call(method, url.netloc.decode(), "/" + encoded, tuple(query), headers, body)
    sign_request(
        request,
        Secret(AK),
        Secret(SK),
        security_token=Secret(security_token) if security_token else None,
        project_id=project,
        now=when.replace(tzinfo=UTC),
    )
    sdk_headers = {k: v for k, v in request.headers.items() if k.lower() in ("x-sdk-date", "content-type")}
    sdk_headers["Host"] = url.netloc.decode()
    if security_token:
        sdk_headers["X-Security-Token"] = security_token
    if project:
        sdk_headers["X-Project-Id"] = project
    oracle = SdkRequest(
        method=method,
        schema="https",
        host=url.host,
        resource_path=request.path,  # as sent
        query_params=list(query),
        header_params=sdk_headers,
        body=body,
    )
    Signer(_Keys(AK, SK)).sign(oracle)
    assert request.headers["Authorization"] == oracle.header_params["Authorization"]


def test_refresh_happens_once_under_concurrency() -> None:
    """32 threads calling through an expired credential cause exactly one refresh."""
    fetched: list[float] = []
    gate = threading.Event()

    def fetch() -> tuple[str, float]:
        fetched.append(time.time())
        gate.wait(1)
        return f"token-{len(fetched)}", time.time() + 60

    holder: Refreshing[str] = Refreshing(fetch, wait=5)
    assert holder.get() == "token-1"
    holder.invalidate("token-1")  # as after a 401, or at expiry
    gate.clear()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(holder.get())) for _ in range(32)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(fetched) == 2
    assert results == ["token-2"] * 32


def test_others_keep_the_valid_value_while_one_refreshes() -> None:
    """Near expiry a failed refresh keeps the valid value; once expired, failures back off and fail fast."""
    now = [1000.0]
    calls = []

    def fetch() -> tuple[str, float]:
        calls.append(now[0])
        if len(calls) in (2, 3):
            raise CredentialsError("IAM unreachable")
        return f"v{len(calls)}", now[0] + 100

    holder: Refreshing[str] = Refreshing(fetch, wait=1, clock=lambda: now[0])
    assert holder.get() == "v1"
    now[0] = 1085.0  # inside the refresh margin (20 % of 100 s), still valid
    assert holder.get() == "v1"  # the refresh failed: the valid value is kept
    now[0] = 1085.5
    assert holder.get() == "v1"  # no new attempt inside the back-off
    assert len(calls) == 2
    now[0] = 1101.0  # expired: the next attempt fails too, and says so
    with pytest.raises(CredentialsError):
        holder.get()
    now[0] = 1101.5  # still backing off: a fast error, no call
    with pytest.raises(CredentialsError):
        holder.get()
    assert len(calls) == 3
    now[0] = 1104.0
    assert holder.get() == "v4"


def test_credential_chain_settings(tmp_path: Path) -> None:
    """The first configured source wins; half a source is a clear start-up error; only its name is logged."""
    base = {
        "CLOUDDC_ENDPOINT": "http://127.0.0.1:1",
        "CLOUDDC_PROJECT_ID": "p",
        "REAPER_EVENT_KEY": "k" * 32,
        "REAPER_INBOUND_AUTH": "platform",
    }
    password_file = tmp_path / "pw"
    password_file.write_text(IAM_PASSWORD)
    iam = {
        "CLOUDDC_IAM_ENDPOINT": "http://127.0.0.1:2",
        "CLOUDDC_IAM_DOMAIN": "d",
        "CLOUDDC_IAM_USER": "u",
        "CLOUDDC_IAM_PASSWORD_FILE": str(password_file),
    }
    chosen = {
        "token": {"CLOUDDC_AUTH_TOKEN": "t" * 20, **iam},
        "iam-password": iam,
        "aksk": {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK},
        "metadata": {"HUAWEICLOUD_CREDENTIALS_FROM_METADATA": "true"},
        "request, else none": {"REAPER_TOKEN_FROM_REQUEST": "true"},
    }
    for name, env in chosen.items():
        settings_ = Settings.from_env({**base, **env})
        assert settings_.credential_source() == name
        assert IAM_PASSWORD not in repr(settings_)
        assert SK not in str(settings_.public_view())
        assert from_settings(settings_).name in name.replace("request, else none", "request")
    with pytest.raises(SettingsError, match="CLOUDDC_IAM_USER"):
        Settings.from_env({**base, **{k: v for k, v in iam.items() if k != "CLOUDDC_IAM_USER"}})
    with pytest.raises(SettingsError, match="both HUAWEICLOUD_SDK_AK"):
        Settings.from_env({**base, "HUAWEICLOUD_SDK_AK": AK})
    with pytest.raises(SettingsError, match="credential source"):
        Settings.from_env(base)


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """An emulator whose tokens and metadata keys live 5 s, and that checks passwords and signatures."""
    port = free_port()
    log = (tmp_path_factory.mktemp("short-lived") / "emulator.log").open("wb")
    argv = reaper_command(
        "emulator", "--port", str(port), "--token", "static-token-unused-" + "x" * 20, "--token-ttl", "5",
        "--metadata-key-ttl", "5", "--iam-password", IAM_PASSWORD, "--ak", AK, "--sk", SK,
    )  # fmt: skip
    process = Process(argv, port, stderr=log).start()
    yield process
    process.stop()
    log.close()


def test_thirty_instances_per_source_outlive_their_credentials(
    short_lived: Process, function_factory: FunctionFactory, sink: Sink
) -> None:
    """Tokens and keys living 5 s, deletes taking 20 s, 30 instances per source (IAM password, AK/SK,
    metadata keys): every instance terminated, none unauthorized, credentials fetched a handful of times."""
    url = short_lived.url
    common = {
        "CLOUDDC_ENDPOINT": url,
        "CLOUDDC_AUTH_TOKEN": "",
        "REAPER_CHECK_DELAY": "2",
        "REAPER_CHECK_MAX_DELAY": "4",
    }
    sources: dict[str, dict[str, str]] = {
        "iam-password": {
            "CLOUDDC_IAM_ENDPOINT": url,
            "CLOUDDC_IAM_DOMAIN": "reaper-domain",
            "CLOUDDC_IAM_USER": "reaper",
            "CLOUDDC_IAM_PASSWORD": IAM_PASSWORD,
        },
        "aksk": {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK},
        "metadata": {"HUAWEICLOUD_CREDENTIALS_FROM_METADATA": "true", "REAPER_METADATA_URL": url},
    }
    admin = httpx.Client(base_url=url, timeout=10)
    instances: dict[str, list[str]] = {}
    functions = []
    for name, env in sources.items():
        fn = function_factory(**common, **env)
        functions.append(fn)
        ids = [new_id(name[:4]) for _ in range(30)]
        specs = [{"id": i, "project_id": PROJECT, "termination_seconds": 20} for i in ids]
        admin.post("/admin/instances", json=specs).raise_for_status()
        instances[name] = ids
        with httpx.Client(timeout=15) as client:
            for instance in ids:
                event = {"specversion": "1.0", "type": "instance-expired", "source": "/t", "id": new_id("ev"),
                         "data": {"instance_id": instance, "project_id": PROJECT}}  # fmt: skip
                answer = client.post(
                    fn.url, json=event, headers={"content-type": "application/cloudevents+json"}
                )
                assert answer.status_code == 200, answer.text
    everything = [i for ids in instances.values() for i in ids]
    wait_until(lambda: all(sink.for_instance(i) for i in everything), 90, "a result for every instance")
    results: dict[str, Any] = {i: sink.for_instance(i)[0] for i in everything}
    assert {r["type"] for r in results.values()} == {"instance-terminated"}, {
        i: r["data"] for i, r in results.items() if r["type"] != "instance-terminated"
    }
    calls = admin.get("/admin/calls").json()
    admin.close()
    assert not [c for c in calls if c["status"] == 401 and c["call"] != "iam"]
    iam_fetches = [c for c in calls if c["call"] == "iam"]
    metadata_fetches = [c for c in calls if c["call"] == "metadata"]
    api_calls = [c for c in calls if c["call"] in ("delete", "status", "list")]
    assert 2 <= len(iam_fetches) <= 15  # refreshed as the 5 s tokens ran out, not per call
    assert 2 <= len(metadata_fetches) <= 15
    assert len(api_calls) > 10 * (len(iam_fetches) + len(metadata_fetches))
    # Neither the password, the SK, nor any issued token or temporary key shows anywhere.
    shown = json.dumps([r for r in results.values()]) + "".join(fn.log() for fn in functions)
    assert IAM_PASSWORD not in shown
    assert SK not in shown
    assert not re.search(r"MII[A-Za-z0-9_-]{40}|gQ[A-Za-z0-9_-]{40}", shown)  # IAM tokens, security tokens
    assert {line["settings"]["credential_source"] for fn in functions for line in fn.log_lines()
            if line.get("message") == "settings"} == set(sources)  # fmt: skip


@pytest.mark.parametrize(
    "family",
    [
        ("X-CFF-Security-Access-Key", "X-CFF-Security-Secret-Key"),
        # The custom-runtime docs' and public event samples' names (issue 27): read as well.
        ("X-CFF-Access-Key", "X-CFF-Secret-Key"),
    ],
)
def test_functiongraph_temporary_keys_sign_that_requests_calls(
    short_lived: Process, function_factory: FunctionFactory, sink: Sink, family: tuple[str, str]
) -> None:
    """With REAPER_TOKEN_FROM_REQUEST, a request's temporary keys (either header family) sign its calls
    and stay unlogged."""
    fn = function_factory(
        target="handle_http",
        signature="http",
        CLOUDDC_ENDPOINT=short_lived.url,
        CLOUDDC_AUTH_TOKEN="",
        REAPER_TOKEN_FROM_REQUEST="true",
    )
    with httpx.Client(base_url=short_lived.url, timeout=10) as admin:
        key = admin.get("/openstack/latest/securitykey").json()["credential"]
        instance = new_id()
        admin.post("/admin/instances", json={"id": instance, "project_id": PROJECT, "termination_seconds": 1})
        event = {"specversion": "1.0", "type": "instance-expired", "source": "/t", "id": new_id("ev"),
                 "data": {"instance_id": instance, "project_id": PROJECT}}  # fmt: skip
        headers = {
            "content-type": "application/cloudevents+json",
            family[0]: key["access"],
            family[1]: key["secret"],
            "X-CFF-Security-Token": key["securitytoken"],
        }
        answered = httpx.post(fn.url, json=event, headers=headers, timeout=10)
        assert answered.status_code == 200, answered.text
        calls = [c for c in admin.get("/admin/calls").json() if c["instance_id"] == instance]
        assert [(c["call"], c["status"]) for c in calls] == [("delete", 204)]
        missing = httpx.post(fn.url, json=event, headers={"content-type": "application/cloudevents+json"})
        assert missing.status_code == 503
        assert "Include keys" in missing.json()["error"]
    for secret in (key["secret"], key["securitytoken"]):
        assert secret not in fn.log()


def test_iam_token_one_refresh_for_32_threads_and_once_more_after_a_401(short_lived: Process) -> None:
    """32 threads asking at once fetch one token; after the API refuses it (401), exactly one new fetch."""
    source = IamTokenSource(short_lived.url, "d", "u", Secret(IAM_PASSWORD), PROJECT, timeout=5)
    url = f"{short_lived.url}/v1/{PROJECT}/instances"
    with httpx.Client(base_url=short_lived.url, timeout=10) as admin:
        before = len([c for c in admin.get("/admin/calls").json() if c["call"] == "iam"])
        seen: list[str] = []

        def call() -> None:
            request = Call("GET", "iam", "/")
            source.apply(request)
            seen.append(request.headers["X-Auth-Token"])

        threads = [threading.Thread(target=call) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(seen) == 32
        assert len(set(seen)) == 1
        assert httpx.get(url, headers={"X-Auth-Token": seen[0]}).status_code == 200
        admin.post("/admin/tokens/expire").raise_for_status()
        assert httpx.get(url, headers={"X-Auth-Token": seen[0]}).json()["error_code"] == "APIGW.0307"
        source.reload()
        request = Call("GET", "iam", "/")
        source.apply(request)
        assert httpx.get(url, headers=request.headers).status_code == 200
        after = len([c for c in admin.get("/admin/calls").json() if c["call"] == "iam"])
    source.close()
    assert after - before == 2
    assert IAM_PASSWORD not in repr(source)

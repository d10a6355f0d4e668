"""Guardrails (design §7): only what should die is deleted, shown through the real function processes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

from function import catalog
from function.schedulers import rabbitmq
from function.secret import Secret
from function.signing import EventSigner
from reaper.devtools.procs import free_port, reaper_command
from reaper.servers import threaded_server
from reaper.tools.send import SHAPES, build_request
from tests.conftest import (
    EVENT_KEY,
    PROJECT,
    TOKEN,
    WEBHOOK_SECRET,
    Emulator,
    Function,
    FunctionFactory,
    Sink,
    expired,
    new_id,
    per_target,
    wait_until,
    webhook_signed,
)

pytestmark = pytest.mark.integration
FUTURE = "2099-01-01T00:00:00Z"
PAST = "2020-01-01T00:00:00Z"
TARGETS = ("handle", "handle_http")
SIGNER = EventSigner(Secret(EVENT_KEY))


@pytest.fixture(scope="module", params=TARGETS)
def guarded(request: pytest.FixtureRequest, function_factory: FunctionFactory) -> Function:
    """The function as shipped: triggers must sign (Standard Webhooks), both targets."""
    target = str(request.param)
    signature = "cloudevent" if target == "handle" else "http"
    return function_factory(
        target=target,
        signature=signature,
        REAPER_INBOUND_AUTH="webhook",
        REAPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )


def post(fn: Function, event: CloudEvent, *, mode: str = "binary", signed: bool = True) -> httpx.Response:
    headers, body = to_binary(event) if mode == "binary" else to_structured(event)
    sent = webhook_signed(headers, body) if signed else dict(headers)
    return httpx.post(fn.url, headers=sent, content=body, timeout=15)


def follow_up(event_type: str, instance: str, *, project: str = PROJECT, **changes: Any) -> CloudEvent:
    """A follow-up as reaper would send it (unsigned until ``SIGNER.sign``)."""
    data = {
        "instance_id": instance,
        "project_id": project,
        "origin_event_id": "ev-" + instance,
        "started_at": catalog.rfc3339(time.time() - 5),
        "deadline_at": catalog.rfc3339(time.time() + 60),
        "deleted_at": None,
        "checks": 0,
        "delete_attempts": 0,
        "failures": 0,
        "redeletes": 0,
        **changes,
    }
    attributes = {"type": event_type, "source": "/reaper", "id": new_id("fu"), "subject": instance}
    return CloudEvent(attributes, data)


def batch_delete(project: str, ids: list[str]) -> CloudEvent:
    data = {
        "project_id": project,
        "instance_ids": ids,
        "origin_event_id": "sweep-test",
        "started_at": catalog.rfc3339(time.time() - 5),
        "deadline_at": catalog.rfc3339(time.time() + 60),
        "deleted_at": None,
        "checks": 0,
        "failures": 0,
        "redeletes": 0,
    }
    return CloudEvent({"type": "instance-batch-delete", "source": "/reaper", "id": new_id("bd")}, data)


def deletes(emulator: Emulator, instance: str) -> list[dict[str, Any]]:
    return [c for c in emulator.touching(instance) if c["call"] in ("delete", "batch-delete")]


# -- what may die -----------------------------------------------------------------------------------


def test_other_project_is_skipped_with_no_call(emulator: Emulator, guarded: Function, sink: Sink) -> None:
    """An event for a project outside the allowlist is answered 2xx, reported skipped, and calls nothing."""
    instance = new_id()
    response = post(guarded, expired(instance, project_id="someone-elses-project"))
    assert response.status_code == 200, response.text
    result = sink.result(instance)
    assert result["type"] == "instance-deletion-skipped"
    assert result["data"]["reason"] == "project-not-allowed"
    assert result["data"]["project_id"] == "someone-elses-project"
    assert emulator.touching(instance) == []


def test_sweep_of_other_project_is_refused_with_no_call(
    emulator: Emulator, function_factory: FunctionFactory
) -> None:
    """A sweep naming a project outside the allowlist lists nothing and is answered skipped."""
    fn = function_factory(target="handle_http", signature="http")
    project = f"other-{uuid.uuid4().hex[:8]}"
    event = CloudEvent({"type": "instance-sweep", "source": "/cron", "id": new_id()}, {"project_id": project})
    response = post(fn, event, signed=False)
    assert response.status_code == 200
    assert response.json()["outcome"] == "skipped"
    assert response.json()["reason"] == "project-not-allowed"
    assert [c for c in emulator.calls() if c["project_id"] == project] == []


@pytest.mark.parametrize(
    ("spec", "data", "reason"),
    [
        ({"metadata": {"reaper-protected": "true"}}, {}, "protected"),
        ({"metadata": {"reaper-protected": "YES", "reaper-expires-at": PAST}}, {}, "protected"),
        ({"metadata": {"reaper-expires-at": FUTURE}}, {}, "not-expired"),
        ({}, {"expired_at": FUTURE}, "not-expired"),
    ],
    ids=["protected", "protected-and-expired", "metadata-in-2099", "event-says-2099"],
)
def test_protected_and_not_expired_are_never_deleted(
    spec: dict[str, Any], data: dict[str, Any], reason: str, emulator: Emulator, guarded: Function, sink: Sink
) -> None:
    """The read before the delete finds protection or a future expiry: skipped with that reason, no DELETE."""
    instance = emulator.add(new_id(), **spec)
    assert post(guarded, expired(instance, **data)).status_code == 200
    result = sink.result(instance)
    assert (result["type"], result["data"]["reason"]) == ("instance-deletion-skipped", reason)
    assert [c["call"] for c in emulator.touching(instance)] == ["list"]
    assert emulator.state(instance) == "running"


def test_redelivered_event_does_not_delete_again(emulator: Emulator, guarded: Function, sink: Sink) -> None:
    """The same instance-expired delivered twice: the second read finds it shutting down, so one DELETE."""
    instance = emulator.add(new_id(), termination_seconds=2)
    event = expired(instance)
    assert post(guarded, event).status_code == 200
    assert post(guarded, event).status_code == 200
    assert sink.result(instance)["type"] == "instance-terminated"
    assert len(deletes(emulator, instance)) == 1


def test_batch_delete_rereads_and_deletes_only_what_the_gate_clears(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """A signed batch-delete re-reads its batch: protected, not expired, gone or going ones are spared."""
    fn = function_factory(target="handle_http", signature="http")
    doomed = emulator.add(new_id(), metadata={"reaper-expires-at": PAST}, termination_seconds=1)
    protected = emulator.add(new_id(), metadata={"reaper-expires-at": PAST, "reaper-protected": "1"})
    renewed = emulator.add(new_id(), metadata={"reaper-expires-at": FUTURE})
    going = emulator.add(new_id(), metadata={"reaper-expires-at": PAST}, termination_seconds=1)
    httpx.delete(f"{emulator.url}/v1/{PROJECT}/instances/{going}", headers={"X-Auth-Token": TOKEN})
    absent = new_id()
    event = batch_delete(PROJECT, [doomed, protected, renewed, going, absent])
    SIGNER.sign(event)
    response = post(fn, event, signed=False)
    assert response.status_code == 200, response.text
    [batch] = [c for c in emulator.calls() if c["call"] == "batch-delete" and doomed in (c["ids"] or [])]
    assert batch["ids"] == [doomed]
    assert sink.result(protected)["data"]["reason"] == "protected"
    assert sink.result(renewed)["data"]["reason"] == "not-expired"
    assert sink.result(absent)["data"]["already_absent"] is True
    assert sink.result(doomed)["type"] == "instance-terminated"
    assert sink.result(going)["type"] == "instance-terminated"


def test_sweep_skips_protected_instances(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """A sweep picks the expired instance and leaves the expired-but-protected one running."""
    project = f"sweep-{uuid.uuid4().hex[:8]}"
    fn = function_factory(target="handle_http", signature="http", REAPER_ALLOWED_PROJECTS=project)
    specs = [
        {
            "id": "expired",
            "project_id": project,
            "metadata": {"reaper-expires-at": PAST},
            "termination_seconds": 1,
        },
        {
            "id": "kept",
            "project_id": project,
            "metadata": {"reaper-expires-at": PAST, "reaper-protected": "on"},
        },
    ]
    emulator.http.post("/admin/instances", json=specs).raise_for_status()
    sweep = CloudEvent({"type": "instance-sweep", "source": "/cron", "id": new_id()}, {"project_id": project})
    response = post(fn, sweep, signed=False)
    assert response.json()["instances"] == 1
    wait_until(lambda: any(e["data"]["project_id"] == project for e in sink.events), 20, "the sweep's result")
    batch = [c for c in emulator.calls() if c["project_id"] == project and c["call"] == "batch-delete"]
    assert [c["ids"] for c in batch] == [["expired"]]


def test_dry_run_reads_and_reports_exactly(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """Dry run reads each instance and reports what it would do: dry-run for the doomed, else the reason."""
    fn = function_factory(REAPER_DRY_RUN="true")
    doomed = emulator.add(new_id())
    protected = emulator.add(new_id(), metadata={"reaper-protected": "true"})
    for instance in (doomed, protected):
        assert fn.send(expired(instance)).status_code == 200
    assert sink.result(doomed)["data"]["reason"] == "dry-run"
    assert sink.result(protected)["data"]["reason"] == "protected"
    for instance in (doomed, protected):
        assert [c["call"] for c in emulator.touching(instance)] == ["list"]


# -- signed self-events ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize(
    "forgery",
    ["unsigned", "wrong key", "tampered data", "signature of another event", "garbage signature"],
)
@pytest.mark.parametrize("kind", ["instance-delete-retry", "instance-status-check"])
def test_forged_internal_events_are_401_with_no_call(
    kind: str, forgery: str, mode: str, emulator: Emulator, guarded: Function
) -> None:
    """An internal type without reaper's valid signature is refused before any CloudDC call."""
    instance = emulator.add(new_id())
    event = follow_up(kind, instance)
    if forgery == "wrong key":
        EventSigner(Secret("not-the-key-" + "x" * 20)).sign(event)
    elif forgery == "tampered data":
        SIGNER.sign(event)
        event.data["project_id"] = "victims-project"
    elif forgery == "signature of another event":
        other = follow_up(kind, new_id())
        SIGNER.sign(other)
        event["reapersignature"] = other["reapersignature"]
    elif forgery == "garbage signature":
        event["reapersignature"] = "v1=" + "g" * 64 if mode == "binary" else "v1=é" + "0" * 63
    response = post(guarded, event, mode=mode)  # webhook-signed too: that is not enough for an internal type
    assert response.status_code == 401, response.text
    assert "reapersignature" in response.json()["error"]
    assert emulator.touching(instance) == []


def test_batch_internal_events_need_the_signature_too(
    emulator: Emulator, function_factory: FunctionFactory
) -> None:
    """An unsigned instance-batch-delete is refused like the single-instance types."""
    fn = function_factory(target="handle_http", signature="http")
    instance = emulator.add(new_id(), metadata={"reaper-expires-at": PAST})
    response = post(fn, batch_delete(PROJECT, [instance]), signed=False)
    assert response.status_code == 401
    assert emulator.touching(instance) == []


def test_sweep_page_needs_the_signature_and_the_allowlist(
    emulator: Emulator, function_factory: FunctionFactory
) -> None:
    """An instance-sweep-page (a sweep's continuation, which leads to batch-deletes) is refused unsigned
    (401, no call); signed, but for a project outside the allowlist, it lists nothing."""
    fn = function_factory(target="handle_http", signature="http")
    instance = emulator.add(new_id(), metadata={"reaper-expires-at": PAST})
    data = {
        "project_id": PROJECT,
        "marker": None,
        "origin_event_id": "sweep-x",
        "failures": 0,
        "throttles": 0,
        "started_at": catalog.rfc3339(time.time()),
        "deadline_at": catalog.rfc3339(time.time() + 60),
    }
    page = CloudEvent({"type": "instance-sweep-page", "source": "/reaper", "id": new_id("fu")}, data)
    before = len(emulator.calls())
    assert post(fn, page, signed=False).status_code == 401
    other = CloudEvent(
        dict(page.get_attributes()) | {"id": new_id("fu")}, {**data, "project_id": "victims-project"}
    )
    SIGNER.sign(other)
    answer = post(fn, other, signed=False)
    assert answer.status_code == 200
    assert answer.json()["reason"] == "project-not-allowed"
    assert emulator.calls()[before:] == []
    assert emulator.touching(instance) == []


def test_signed_follow_up_and_key_rotation(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """A follow-up signed with REAPER_EVENT_KEY_PREVIOUS is still accepted after a key rotation."""
    fn = function_factory(REAPER_EVENT_KEY="rotated-" + "n" * 24, REAPER_EVENT_KEY_PREVIOUS=EVENT_KEY)
    instance = emulator.add(new_id(), termination_seconds=1)
    event = follow_up("instance-delete-retry", instance)
    SIGNER.sign(event)
    assert fn.send(event).status_code == 200
    assert sink.result(instance)["type"] == "instance-terminated"
    assert [c["call"] for c in emulator.touching(instance)][:2] == ["list", "delete"]


def test_forged_internal_event_through_the_rabbitmq_relay(
    emulator: Emulator, function_factory: FunctionFactory
) -> None:
    """An unsigned instance-delete-retry on the queue reaches the function, gets 401, is dead-lettered."""
    url = "amqp://guest:guest@127.0.0.1:5672/"
    queue = f"reaper.test.{uuid.uuid4().hex[:8]}"
    fn = function_factory(REAPER_SCHEDULER="rabbitmq", REAPER_RABBITMQ_URL=url, REAPER_RABBITMQ_QUEUE=queue)
    connection = rabbitmq.connect(Secret(url))
    channel = connection.channel()
    channel.confirm_delivery()
    rabbitmq.declare_topology(channel, queue)
    instance = emulator.add(new_id())
    rabbitmq.publish(
        channel, queue, {}, rabbitmq.structured_body(follow_up("instance-delete-retry", instance)), 0
    )
    relay = subprocess.Popen(
        reaper_command("rabbitmq-relay", "--target", fn.url, "--queue", queue, "--url", url),
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        dead = wait_until(
            lambda: channel.basic_get(rabbitmq.dead_queue(queue), auto_ack=True)[2], 20, "dead letter"
        )
        assert json.loads(dead)["type"] == "instance-delete-retry"
    finally:
        relay.terminate()
        relay.wait(10)
        for name in (
            queue,
            rabbitmq.dead_queue(queue),
            *(rabbitmq.wait_queue(queue, b) for b in rabbitmq.BUCKETS_MS),
        ):
            channel.queue_delete(name)
        channel.exchange_delete(queue)
        connection.close()
    assert emulator.touching(instance) == []


# -- who may ask ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_every_envelope_unauthenticated_is_401(
    shape: str, emulator: Emulator, webhook_function: Function
) -> None:
    """Each envelope reaper unwraps, sent without a valid signature, is refused with no call."""
    instance = emulator.add(new_id())
    headers, body = build_request(shape, instance, PROJECT)
    unsigned = httpx.post(webhook_function.url, headers=headers, content=body)
    assert unsigned.status_code == 401, unsigned.text
    signed_for_other_body = webhook_signed(headers, body + b" ")
    assert httpx.post(webhook_function.url, headers=signed_for_other_body, content=body).status_code == 401
    assert emulator.touching(instance) == []


def test_webhook_replay_is_refused(emulator: Emulator, webhook_function: Function) -> None:
    """A captured signed request replayed inside the window is refused: one DELETE only."""
    instance = emulator.add(new_id())
    headers, body = to_binary(expired(instance))
    signed = webhook_signed(headers, body)
    assert httpx.post(webhook_function.url, headers=signed, content=body).status_code == 200
    replay = httpx.post(webhook_function.url, headers=signed, content=body)
    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]
    assert len(deletes(emulator, instance)) == 1


def test_webhook_redelivery_after_a_5xx_is_not_a_replay(
    emulator: Emulator, function_factory: FunctionFactory
) -> None:
    """A signed request answered 503 (could not hand on) may be delivered again with the same webhook-id."""
    fn = function_factory(
        REAPER_INBOUND_AUTH="webhook",
        REAPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
        REAPER_DELAY_SERVICE_URL=f"http://127.0.0.1:{free_port()}",
    )
    instance = emulator.add(new_id())
    headers, body = to_binary(expired(instance))
    signed = webhook_signed(headers, body)
    assert httpx.post(fn.url, headers=signed, content=body).status_code == 503
    assert httpx.post(fn.url, headers=signed, content=body).status_code == 503


class Google:
    """A loopback stand-in for Google's JWKS endpoint, and the ID tokens its key signs."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwks = json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]})

        @Request.application
        def app(request: Request) -> Response:
            return Response(jwks, 200, mimetype="application/json")

        self.server = threaded_server("127.0.0.1", 0, app)
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth2/v3/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, audience: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "iat": now,
            "exp": now + 600,
            "email": "invoker@proj.iam.gserviceaccount.com",
            "email_verified": True,
            "sub": "1234",
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": claims.pop("kid", "k1")})


@pytest.fixture(scope="module")
def google() -> Iterator[Google]:
    fake = Google()
    yield fake
    fake.server.shutdown()


@pytest.mark.parametrize(
    ("case", "claims", "status"),
    [
        ("valid", {}, 200),
        ("other audience", {"aud": "https://elsewhere.example/"}, 401),
        ("other account", {"email": "mallory@evil.example"}, 401),
        ("unverified e-mail", {"email_verified": False}, 401),
        ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, 401),
        ("other issuer", {"iss": "https://evil.example"}, 401),
    ],
)
@pytest.mark.parametrize("target", TARGETS)
def test_oidc_method(
    case: str,
    claims: dict[str, Any],
    status: int,
    target: str,
    google: Google,
    emulator: Emulator,
    oidc_fn: Callable[[str], Function],
) -> None:
    """Google ID tokens: accepted for an allowed, verified account and our audience; refused otherwise."""
    fn = oidc_fn(target)
    instance = emulator.add(new_id())
    headers, body = to_binary(expired(instance))
    token = google.token(fn.url, **claims)
    response = httpx.post(fn.url, headers={**headers, "Authorization": f"Bearer {token}"}, content=body)
    assert response.status_code == status, (case, response.text)
    assert bool(deletes(emulator, instance)) is (status == 200)


def test_oidc_unknown_key_and_missing_token(
    google: Google, emulator: Emulator, oidc_fn: Callable[[str], Function]
) -> None:
    """A token signed by another key, a malformed one, or none at all is refused with no call."""
    fn = oidc_fn("handle_http")
    instance = emulator.add(new_id())
    headers, body = to_binary(expired(instance))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"aud": fn.url, "email": "invoker@proj.iam.gserviceaccount.com"}, stranger, "RS256",
                        headers={"kid": "k1"})  # fmt: skip
    for authorization in (f"Bearer {forged}", "Bearer not.a.jwt", "Basic Zm9vOmJhcg==", None):
        sent = {**headers, "Authorization": authorization} if authorization else dict(headers)
        assert httpx.post(fn.url, headers=sent, content=body).status_code == 401
    assert emulator.touching(instance) == []


@pytest.fixture(scope="module")
def oidc_fn(function_factory: FunctionFactory, google: Google) -> Callable[[str], Function]:
    """A function per target that takes external events only with a Google ID token of the invoker."""
    return per_target(
        function_factory,
        REAPER_INBOUND_AUTH="oidc",
        REAPER_OIDC_JWKS_URL=google.url,
        REAPER_OIDC_ALLOWED_EMAILS="invoker@proj.iam.gserviceaccount.com",
    )


# -- shape limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_only_json_bodies_are_read(content_type: str | None, emulator: Emulator, guarded: Function) -> None:
    """A structured event sent as text/plain (what a browser may send cross-site) or untyped gets 415."""
    instance = emulator.add(new_id())
    _, body = to_structured(expired(instance))
    headers = webhook_signed({"Content-Type": content_type} if content_type else {}, body)
    if content_type is None:
        headers.pop("Content-Type", None)
    response = httpx.post(guarded.url, headers=headers, content=body)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]
    assert emulator.touching(instance) == []


def test_binary_event_without_content_type_is_read_as_json(emulator: Emulator, guarded: Function) -> None:
    """A binary CloudEvent with no Content-Type is read as JSON because ce-specversion says what it is."""
    instance = emulator.add(new_id())
    headers, body = to_binary(expired(instance))
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    assert httpx.post(guarded.url, headers=webhook_signed(headers, body), content=body).status_code == 200
    assert deletes(emulator, instance)


def test_more_messages_than_allowed_is_413(emulator: Emulator, webhook_function: Function) -> None:
    """101 messages in one DMS request: 413 and nothing done."""
    instances = [new_id() for _ in range(101)]
    messages = [json.dumps({"instance_id": i, "project_id": PROJECT}) for i in instances]
    body = json.dumps({"trigger_type": "RABBITMQ", "records": [{"messages": messages}]}).encode()
    headers = webhook_signed({"Content-Type": "application/json"}, body)
    response = httpx.post(webhook_function.url, headers=headers, content=body)
    assert response.status_code == 413
    assert "REAPER_MAX_MESSAGES_PER_REQUEST" in response.json()["error"]
    assert not any(emulator.touching(i) for i in instances[:5])

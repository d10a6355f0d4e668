"""Every accepted envelope, from its documented sample, through the real function process."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from reaper.tools.send import SHAPES, build_request
from tests.conftest import (
    PROJECT,
    WEBHOOK_SECRET,
    Emulator,
    Function,
    FunctionFactory,
    Sink,
    new_id,
    webhook_signed,
)

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).parents[2] / "events" / "samples" / "envelopes"
SAMPLE_PROJECT = "0123456789abcdef0123456789abcdef"


def sample(name: str, ids: dict[str, str]) -> bytes:
    """A sample with its instance and project ids replaced by this test's (also inside base64 data)."""
    text = (SAMPLES / name).read_text()
    document = json.loads(text)
    message = document.get("message")
    if isinstance(message, dict):
        inner = base64.b64decode(message["data"]).decode()
        message["data"] = base64.b64encode(_swap(inner, ids).encode()).decode()
        text = json.dumps(document)
    return _swap(text, ids).encode()


def _swap(text: str, ids: dict[str, str]) -> str:
    for old, new in {**ids, SAMPLE_PROJECT: PROJECT}.items():
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def envelope_function(webhook_function: Function) -> Function:
    return webhook_function


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("pubsub-push.json", 1),
        ("pubsub-push-cloudevent.json", 1),
        ("eventgrid-cloudevent.json", 1),
        ("functiongraph-timer-expired.json", 1),
        ("functiongraph-dms-rabbitmq.json", 1),
        ("functiongraph-dms-kafka.json", 2),
        ("webhook.json", 1),
    ],
)
def test_envelope_sample_deletes_its_instances(
    name: str, count: int, emulator: Emulator, envelope_function: Function, sink: Sink
) -> None:
    """The documented sample, with fresh ids, makes the function DELETE exactly its instances."""
    ids = {"i-0001": emulator.add(new_id()), "i-0002": emulator.add(new_id())}
    body = sample(name, ids)
    headers = webhook_signed({"Content-Type": "application/json"}, body)
    response = httpx.post(envelope_function.url + "invoke", content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    deleted = [i for i in ids.values() if [c["call"] for c in emulator.calls(i)][:1] == ["delete"]]
    assert len(deleted) == count
    for instance in deleted:
        assert sink.result(instance)["type"] == "instance-terminated"


def test_functiongraph_init_and_timer_sweep(emulator: Emulator, envelope_function: Function) -> None:
    """POST /init answers 200; the timer sample starts a sweep (a ListInstances call)."""
    assert httpx.post(envelope_function.url + "init").json() == {"initialized": True}
    before = len([c for c in emulator.calls() if c["call"] == "list"])
    body = sample("functiongraph-timer.json", {})
    headers = webhook_signed({"Content-Type": "application/json"}, body)
    response = httpx.post(envelope_function.url + "invoke", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["outcome"] == "swept"
    assert len([c for c in emulator.calls() if c["call"] == "list"]) > before


@pytest.mark.parametrize(
    ("case", "body", "headers", "status"),
    [
        ("unrecognised JSON", b'{"hello": 1}', {}, 400),
        ("not JSON", b"hello", {}, 400),
        ("pubsub data not base64", b'{"message": {"data": "***"}}', {}, 400),
        ("pubsub data not an object", b'{"message": {"data": "WzFd"}}', {}, 422),
        ("dms records without messages", b'{"trigger_type": "KAFKA", "records": [{}]}', {}, 400),
        (
            "dms with only bad messages",
            b'{"trigger_type": "KAFKA", "records": [{"messages": ["x"]}]}',
            {},
            400,
        ),
        ("timer user_event not JSON", b'{"trigger_type": "TIMER", "user_event": "{oops"}', {}, 400),
        ("unsigned webhook", b'{"instance_id": "i-1"}', {}, 401),
        (
            "badly signed webhook",
            b'{"instance_id": "i-1"}',
            {"webhook-id": "m1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
            401,
        ),
        (
            "malformed signature",
            b'{"instance_id": "i-1"}',
            {"webhook-id": "m", "webhook-signature": "v1"},
            401,
        ),
    ],
)
def test_malformed_envelopes_are_refused_without_calls(
    case: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    emulator: Emulator,
    envelope_function: Function,
) -> None:
    """Malformed envelopes get a 4xx naming the accepted shapes, and cause no CloudDC call."""
    fresh = new_id()
    body = body.replace(b'"i-1"', f'"{fresh}"'.encode())
    before = len(emulator.calls())
    response = httpx.post(
        envelope_function.url, content=body, headers={"Content-Type": "application/json", **headers}
    )
    assert response.status_code == status, (case, response.text)
    assert response.json()["error"]
    # Other tests' chains may call the emulator meanwhile: look for this request's instance, or a sweep.
    since = emulator.calls()[before:]
    assert [c for c in since if c["instance_id"] == fresh or fresh in (c["ids"] or [])] == []
    assert [c for c in since if c["call"] == "list" and c["ids"] is None] == []  # no sweep either
    if status == 400 and "unrecognised" in case:
        assert "Pub/Sub" in response.json()["error"]


def test_one_bad_message_does_not_stop_the_batch(emulator: Emulator, envelope_function: Function) -> None:
    """In a DMS batch, a bad message is reported in its place and the good one is still handled."""
    good = emulator.add(new_id())
    record = {"messages": ["not json", json.dumps({"instance_id": good, "project_id": PROJECT})]}
    body = json.dumps({"trigger_type": "RABBITMQ", "records": [record]}).encode()
    headers = webhook_signed({"Content-Type": "application/json"}, body)
    response = httpx.post(envelope_function.url, content=body, headers=headers)
    assert response.status_code == 200
    outcomes = response.json()["outcomes"]
    assert outcomes[0]["status"] == 400
    assert outcomes[1]["outcome"] == "scheduled-status"


@pytest.mark.parametrize(
    "messages",
    [["not json", "[1]"], [json.dumps({"project_id": PROJECT}), json.dumps({"instance_id": "bad id!"})]],
    ids=["unparseable", "invalid"],
)
def test_a_batch_of_poison_has_one_contract(
    messages: list[str], emulator: Emulator, envelope_function: Function
) -> None:
    """Messages that do not parse and messages that fail validation are answered alike: 200 with a 4xx
    outcome each (the batch is not redelivered), no call; unauthenticated, the batch is 401."""
    body = json.dumps({"trigger_type": "RABBITMQ", "records": [{"messages": messages}]}).encode()
    before = len(emulator.calls())
    unsigned = httpx.post(envelope_function.url, content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    response = httpx.post(
        envelope_function.url,
        content=body,
        headers=webhook_signed({"Content-Type": "application/json"}, body),
    )
    assert response.status_code == 200, response.text
    assert [400 <= o["status"] < 500 for o in response.json()["outcomes"]] == [True, True]
    assert [c for c in emulator.calls()[before:] if c["call"] == "list" and c["ids"] is None] == []


@pytest.mark.parametrize("shape", SHAPES)
def test_reaper_send_every_shape(
    shape: str, emulator: Emulator, envelope_function: Function, sink: Sink
) -> None:
    """`reaper send` builds each shape so that the function accepts it and deletes the instance."""
    instance = emulator.add(new_id())
    headers, body = build_request(shape, instance, PROJECT)
    response = httpx.post(envelope_function.url, content=body, headers=webhook_signed(headers, body))
    assert response.status_code == 200, response.text
    assert sink.result(instance)["type"] == "instance-terminated"


def test_reaper_send_command(
    emulator: Emulator, envelope_function: Function, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI prints the HTTP status and the function's answer."""
    from reaper import cli

    instance = emulator.add(new_id())
    auth = ["--auth", "webhook", "--secret", WEBHOOK_SECRET]
    assert cli.main(["send", envelope_function.url, "--instance", instance, "--project", PROJECT, *auth]) == 0
    out = capsys.readouterr().out
    assert out.startswith("HTTP 200")
    assert "scheduled-status" in out
    assert cli.main(["send", envelope_function.url, "--instance", "bad/id", "--project", PROJECT, *auth]) == 1
    assert cli.main(["send", envelope_function.url, "--instance", instance, "--project", PROJECT]) == 1
    assert "HTTP 401" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown shape"):
        build_request("carrier-pigeon", "i-1", PROJECT)


def pubsub_push(instance: str) -> dict[str, object]:
    payload = json.dumps({"instance_id": instance, "project_id": PROJECT}).encode()
    return {
        "message": {"data": base64.b64encode(payload).decode(), "messageId": new_id(), "attributes": {}},
        "subscription": "projects/p/subscriptions/reaper",
    }


def test_pubsub_message_published_reaches_the_cloudevent_target(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """``handle`` takes Pub/Sub as functions-framework converts a push and as Eventarc delivers it."""
    fn = function_factory()  # the CloudEvent target
    pushed, eventarc, empty = (emulator.add(new_id()) for _ in range(3))
    assert httpx.post(fn.url, json=pubsub_push(pushed), timeout=10).status_code == 200
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/reaper",
        "ce-id": new_id(),
        "content-type": "application/json",
    }
    answer = httpx.post(fn.url, content=json.dumps(pubsub_push(eventarc)), headers=headers, timeout=10)
    assert answer.status_code == 200
    for instance in (pushed, eventarc):
        assert sink.result(instance)["type"] == "instance-terminated"
    refused = httpx.post(
        fn.url, content=json.dumps({"subscription": "s", "note": empty}), headers=headers, timeout=10
    )
    assert refused.status_code == 422
    assert "data.message.data" in refused.json()["error"]
    assert emulator.touching(empty) == []


def test_eventarcs_message_published_reaches_the_http_target_and_its_authentication(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """Issue 27: the README lists ``messagePublished`` for ``handle_http`` too. Binary and structured, it
    is read there as Pub/Sub (not "unknown event type"), and an external event inside still has to pass
    REAPER_INBOUND_AUTH: refused without the ID token, reaped when the platform authenticates."""
    binary, structured = emulator.add(new_id()), emulator.add(new_id())
    attributes = {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/reaper",
    }
    headers = {f"ce-{k}": v for k, v in attributes.items()} | {
        "ce-id": new_id(),
        "content-type": "application/json",
    }
    open_fn = function_factory(target="handle_http", signature="http")
    answer = httpx.post(open_fn.url, content=json.dumps(pubsub_push(binary)), headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    document = {**attributes, "id": new_id(), "data": pubsub_push(structured)}
    answer = httpx.post(
        open_fn.url,
        content=json.dumps(document),
        headers={"content-type": "application/cloudevents+json"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    for instance in (binary, structured):
        assert sink.result(instance)["type"] == "instance-terminated"
    guarded = function_factory(
        target="handle_http",
        signature="http",
        REAPER_INBOUND_AUTH="oidc",
        REAPER_OIDC_ALLOWED_EMAILS="invoker@p.iam.gserviceaccount.com",
    )
    untouched = emulator.add(new_id())
    refused = httpx.post(guarded.url, content=json.dumps(pubsub_push(untouched)), headers=headers, timeout=10)
    assert refused.status_code == 401, refused.text
    assert emulator.touching(untouched) == []

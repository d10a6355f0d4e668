"""The RabbitMQ transport and relay against the real broker on 127.0.0.1:5672."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pika
import pika.exceptions
import pytest
from cloudevents.http import CloudEvent
from pika.adapters.blocking_connection import BlockingChannel

from function.schedulers import rabbitmq
from function.schedulers.rabbitmq import BUCKETS_MS, RabbitMQScheduler, bucket_for, declare_topology
from function.secret import Secret
from reaper.companions.rabbitmq_relay import Relay
from reaper.devtools.procs import free_port, reaper_command
from tests.conftest import PROJECT, Emulator, FunctionFactory, Receiver, Sink, expired, new_id, wait_until

pytestmark = pytest.mark.integration
URL = os.environ.get("REAPER_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="module")
def broker() -> Iterator[pika.BlockingConnection]:
    try:
        connection = rabbitmq.connect(Secret(URL))
    except pika.exceptions.AMQPError as exc:
        message = f"RabbitMQ not reachable at 127.0.0.1:5672 ({type(exc).__name__})"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run should have started it")
        pytest.skip(message)
    yield connection
    connection.close()


@pytest.fixture
def queue(broker: pika.BlockingConnection) -> Iterator[str]:
    name = f"reaper.test.{uuid.uuid4().hex[:8]}"
    channel = broker.channel()
    declare_topology(channel, name)
    yield name
    delete_topology(channel, name)
    channel.close()


def delete_topology(channel: BlockingChannel, name: str, *extra_queues: str) -> None:
    for queue_name in (name, rabbitmq.dead_queue(name), *(rabbitmq.wait_queue(name, b) for b in BUCKETS_MS)):
        channel.queue_delete(queue_name)
    for queue_name in extra_queues:
        channel.queue_delete(queue_name)
    channel.exchange_delete(name)


def test_bucket_rounding() -> None:
    """A delay is rounded up to the next bucket; beyond the largest it uses the largest."""
    assert bucket_for(0) is None
    assert bucket_for(1) == 1_000
    assert bucket_for(1_000) == 1_000
    assert bucket_for(1_001) == 2_000
    assert bucket_for(10**9) == BUCKETS_MS[-1]


def test_delays_arrive_in_due_order_as_structured_events(broker: pika.BlockingConnection, queue: str) -> None:
    """5 s and 1 s delays published together arrive in due order within ±0.5 s, as structured events."""
    scheduler = RabbitMQScheduler(Secret(URL), queue)
    published = time.monotonic()
    for event_id, delay in (("slow", 5.0), ("fast", 1.0)):
        event = CloudEvent(
            {"type": "instance-status-check", "source": "/t", "id": event_id, "subject": "i-1"}, {"n": 1}
        )
        scheduler.schedule(event, delay, f"key-{event_id}")
    channel = broker.channel()
    arrivals: list[tuple[str, float, pika.BasicProperties, dict[str, Any]]] = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=8):
        if method is None or properties is None or body is None or method.delivery_tag is None:
            break
        document = json.loads(body)
        arrivals.append((document["id"], time.monotonic() - published, properties, document))
        channel.basic_ack(method.delivery_tag)
        if len(arrivals) == 2:
            break
    channel.cancel()
    scheduler.close()
    assert [a[0] for a in arrivals] == ["fast", "slow"]
    assert abs(arrivals[0][1] - 1.0) <= 0.5
    assert abs(arrivals[1][1] - 5.0) <= 0.5
    properties, document = arrivals[0][2], arrivals[0][3]
    assert properties.content_type == "application/cloudevents+json"
    assert (document["type"], document["subject"], document["specversion"]) == (
        "instance-status-check",
        "i-1",
        "1.0",
    )
    assert document["data"] == {"n": 1}
    assert (properties.type, properties.message_id) == ("instance-status-check", "fast")
    assert properties.headers is not None
    assert not [name for name in properties.headers if name.startswith("ce-")]
    assert properties.headers[rabbitmq.DEDUP_KEY] == "key-fast"
    assert "x-death" in properties.headers  # it really went through dead-lettering


def test_long_delays_are_chained_by_the_relay(
    broker: pika.BlockingConnection, queue: str, receiver: Receiver
) -> None:
    """A message still due in the future is sent through another bucket instead of being delivered."""
    channel = broker.channel()
    channel.confirm_delivery()
    due = int(time.time() * 1000) + 1_800
    headers: dict[str, Any] = {
        "ce-id": "later",
        "ce-type": "t",
        "ce-source": "/s",
        "ce-specversion": "1.0",
        rabbitmq.DUE_AT: due,
    }
    # As if it came out of the largest bucket with time still to go.
    channel.basic_publish(
        "", queue, b"{}", pika.BasicProperties(headers=headers, content_type="application/json")
    )
    worker = Relay(Secret(URL), queue, receiver.url)
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.time()
    thread.start()
    wait_until(lambda: receiver.ids(), 10, "chained delivery")
    worker.stop()
    thread.join(5)
    assert time.time() - started >= 1.0  # it was held back, not delivered at once
    assert receiver.ids() == ["later"]


def test_relay_settles_by_status(broker: pika.BlockingConnection, queue: str, receiver: Receiver) -> None:
    """2xx acks, 4xx dead-letters to <queue>.dead, 5xx comes back later through a wait bucket."""
    receiver.script = [400, 503]
    channel = broker.channel()
    channel.confirm_delivery()
    for event_id in ("refused", "retried"):
        headers = {"ce-id": event_id, "ce-type": "t", "ce-source": "/s", "ce-specversion": "1.0"}
        # Binary mode, as messages published before the transport went structured.
        rabbitmq.publish(channel, queue, headers, b"{}", 0, content_type="application/json")
    worker = Relay(Secret(URL), queue, receiver.url, prefetch=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_until(lambda: receiver.ids() == ["retried"], 15, "the retried delivery")
    worker.stop()
    thread.join(5)
    dead = channel.basic_get(rabbitmq.dead_queue(queue), auto_ack=True)
    assert dead[1] is not None
    assert dead[1].headers is not None
    assert dead[1].headers["ce-id"] == "refused"


def test_end_to_end_with_relay_restart(
    broker: pika.BlockingConnection,
    queue: str,
    emulator: Emulator,
    function_factory: FunctionFactory,
    sink: Sink,
) -> None:
    """Emulator + function + relay + broker, RabbitMQ the only transport: 20 instances reach terminated,
    with the relay killed and restarted mid-run."""
    fn = function_factory(
        REAPER_SCHEDULER="rabbitmq",
        REAPER_RABBITMQ_URL=URL,
        REAPER_RABBITMQ_QUEUE=queue,
        REAPER_DELAY_SERVICE_URL=f"http://127.0.0.1:{free_port()}",  # nothing there: not used
        REAPER_CHECK_DELAY="1",
    )
    argv = reaper_command("rabbitmq-relay", "--target", fn.url, "--queue", queue, "--url", URL)
    relay = subprocess.Popen(argv, stderr=subprocess.DEVNULL, start_new_session=True)
    instances = [emulator.add(new_id(), termination_seconds=3) for _ in range(20)]
    lease_system = RabbitMQScheduler(Secret(URL), queue)
    try:
        for instance in instances:
            lease_system.schedule(expired(instance), 0, f"expired-{instance}")
        wait_until(lambda: any(emulator.calls(i) for i in instances), 20, "the first deletes")
        relay.kill()  # mid-run: some messages in flight, some checks waiting in buckets
        relay.wait(10)
        time.sleep(1.5)
        relay = subprocess.Popen(argv, stderr=subprocess.DEVNULL, start_new_session=True)
        for instance in instances:
            result = sink.result(instance, timeout=60)
            assert result["type"] == "instance-terminated"
            assert result["data"]["project_id"] == PROJECT
    finally:
        relay.terminate()
        relay.wait(10)
        lease_system.close()
    assert relay.returncode == 0  # SIGTERM is a clean shutdown


def test_publish_failure_is_hand_off_error() -> None:
    """An unreachable broker makes schedule() raise HandOffError (the handler answers 503)."""
    from function.errors import HandOffError

    scheduler = RabbitMQScheduler(Secret(f"amqp://guest:guest@127.0.0.1:{free_port()}/"), "reaper.nowhere")
    with pytest.raises(HandOffError, match="RabbitMQ"):
        scheduler.schedule(expired("i-1"), 1, "k")


def dms_records(*bodies: bytes) -> dict[str, Any]:
    """A FunctionGraph RabbitMQ trigger event: message bodies only, no AMQP headers or properties."""
    return {
        "event_version": "v1.0",
        "trigger_type": "RABBITMQ",
        "region": "cn-east-3",
        "instance_id": "81335d56-b9fe-4679-ba95-7030949cc76b",
        "records": [{"messages": [body.decode() for body in bodies], "topic_id": "reaper.events"}],
    }


def test_follow_up_delivered_body_only_stays_a_status_check(
    broker: pika.BlockingConnection,
    emulator: Emulator,
    function_factory: FunctionFactory,
    sink: Sink,
) -> None:
    """As FunctionGraph's trigger delivers it (a queue of its own bound to the exchange, bodies in
    ``records[]``), a delayed follow-up is read as a status check: one status read, one DELETE in all."""
    name = f"reaper.test.{uuid.uuid4().hex[:8]}"
    trigger_queue = f"{name}.functiongraph-trigger"
    fn = function_factory(
        target="handle_http",
        signature="http",
        REAPER_SCHEDULER="rabbitmq",
        REAPER_RABBITMQ_URL=URL,
        REAPER_RABBITMQ_QUEUE=name,
        REAPER_RABBITMQ_DECLARE_QUEUE="false",
        REAPER_CHECK_DELAY="1",
    )
    channel = broker.channel()
    declare_topology(channel, name, with_queue=False)
    channel.queue_declare(trigger_queue, durable=True)
    channel.queue_bind(trigger_queue, name)
    instance = emulator.add(new_id())
    try:
        body = json.dumps(expired(instance).data | {"type": "instance-expired"}).encode()
        answer = httpx.post(fn.url, json=dms_records(body), timeout=10)
        assert answer.status_code == 200, answer.text
        delivered = wait_until(
            lambda: channel.basic_get(trigger_queue, auto_ack=True)[2], 15, "the delayed follow-up"
        )
        assert json.loads(delivered)["type"] == "instance-status-check"
        assert httpx.post(fn.url, json=dms_records(delivered), timeout=10).status_code == 200
        assert sink.result(instance)["type"] == "instance-terminated"
        assert [c["call"] for c in emulator.touching(instance)] == ["list", "delete", "status"]
        # No input queue was declared: nothing collects messages that nobody consumes.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="404"):
            channel.queue_declare(name, passive=True)
        channel = broker.channel()
    finally:
        delete_topology(channel, name, trigger_queue)

"""The ``rabbitmq`` transport: TTL + dead-letter, one wait queue per delay bucket.

A single TTL queue only expires messages at its head (measured: a 1 s message behind a 5 s one
waits 5 s), so each bucket has its own queue whose ``x-message-ttl`` is the bucket and whose
dead-letter target is the fanout exchange named like the input queue. A delay is rounded up to the
next bucket; delays beyond the largest bucket carry ``x-reaper-due-at`` and are chained by the relay.

Messages are structured-mode CloudEvents (``application/cloudevents+json``: the type, id and signature
travel in the body), so a consumer that passes bodies only (FunctionGraph's RabbitMQ trigger) still
delivers a follow-up as a follow-up; persistent, published with confirms. Declarations are idempotent
and identical wherever they run (function, relay, tests), so any of them may create the topology.

    producers ──► <input>.wait.<ms>ms (TTL) ──dead-letter──► exchange <input> (fanout)
                    ├─► queue <input> ──► relay / RabbitmqSource ──► function  (rejected 4xx ──► <input>.dead)
                    └─► FunctionGraph's RabbitMQ trigger (binds its own queue to the exchange)
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from bisect import bisect_left
from typing import Any, Final

import pika
import pika.exceptions
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from pika.adapters.blocking_connection import BlockingChannel

from function.errors import HandOffError
from function.mediatypes import STRUCTURED
from function.secret import Secret

BUCKETS_MS: Final = (
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    1_800_000,
    3_600_000,
)
DUE_AT: Final = "x-reaper-due-at"
DEDUP_KEY: Final = "x-reaper-dedup-key"
ATTEMPTS: Final = "x-reaper-attempts"


def wait_queue(input_queue: str, bucket_ms: int) -> str:
    """Name of the wait queue for one delay bucket."""
    return f"{input_queue}.wait.{bucket_ms}ms"


def dead_queue(input_queue: str) -> str:
    """Where messages the function refused (4xx) end up, for an operator to inspect."""
    return f"{input_queue}.dead"


def bucket_for(delay_ms: int) -> int | None:
    """The smallest bucket at least ``delay_ms`` long; None for no delay; the largest when beyond it."""
    if delay_ms <= 0:
        return None
    index = bisect_left(BUCKETS_MS, delay_ms)
    return BUCKETS_MS[min(index, len(BUCKETS_MS) - 1)]


def declare_topology(channel: BlockingChannel, input_queue: str, *, with_queue: bool = True) -> None:
    """Declare the exchange and wait queues, and (``with_queue``) the input and dead-letter queues.

    Idempotent: the same arguments everywhere. Without ``with_queue`` (FunctionGraph, whose trigger
    binds a queue of its own to the exchange) no queue collects messages nobody consumes.
    """
    channel.exchange_declare(input_queue, exchange_type="fanout", durable=True)
    if with_queue:
        channel.queue_declare(dead_queue(input_queue), durable=True)
        channel.queue_declare(
            input_queue,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_queue(input_queue)},
        )
        channel.queue_bind(input_queue, input_queue)
    for bucket in BUCKETS_MS:
        channel.queue_declare(
            wait_queue(input_queue, bucket),
            durable=True,
            arguments={"x-message-ttl": bucket, "x-dead-letter-exchange": input_queue},
        )


def structured_body(event: CloudEvent) -> bytes:
    """An event as a structured-mode JSON body (no ``ce-`` headers, so nothing is read twice)."""
    _headers, body = to_structured(event)
    return body


def publish(
    channel: BlockingChannel,
    input_queue: str,
    headers: dict[str, Any],
    body: bytes,
    delay: float,
    *,
    message_id: str | None = None,
    content_type: str = STRUCTURED,
    event_type: str | None = None,
) -> None:
    """Publish persistently with confirms into the bucket for ``delay`` (or straight to the exchange)."""
    delay_ms = max(0, math.ceil(delay * 1000))
    bucket = bucket_for(delay_ms)
    stamped = {**headers}
    if bucket is not None and delay_ms > bucket:
        stamped[DUE_AT] = int(time.time() * 1000) + delay_ms
    else:
        stamped.pop(DUE_AT, None)
    channel.basic_publish(
        exchange="" if bucket else input_queue,
        routing_key=wait_queue(input_queue, bucket) if bucket else input_queue,
        body=body,
        properties=pika.BasicProperties(
            headers=stamped,
            content_type=content_type,
            type=event_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
        ),
        mandatory=True,
    )


def connect(url: Secret) -> pika.BlockingConnection:
    """Open a connection (heartbeats on, short connect timeout)."""
    parameters = pika.URLParameters(url.reveal())
    parameters.heartbeat = 30
    parameters.blocked_connection_timeout = 10
    parameters.socket_timeout = 5
    return pika.BlockingConnection(parameters)


class RabbitMQScheduler:
    """Publishes follow-ups into wait queues; one connection shared under a lock (pika is not thread-safe)."""

    def __init__(self, url: Secret, input_queue: str, *, declare_queue: bool = True) -> None:
        self._url = url
        self._queue = input_queue
        self._declare_queue = declare_queue
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def schedule(self, event: CloudEvent, delay: float, dedup_key: str) -> None:
        """Publish the event to arrive in the input queue after ``delay`` (rounded up to a bucket)."""
        headers: dict[str, Any] = {DEDUP_KEY: dedup_key}
        body = structured_body(event)
        with self._lock:
            for attempt in (1, 2):
                try:
                    channel = self._open_channel()
                    publish(
                        channel,
                        self._queue,
                        headers,
                        body,
                        delay,
                        message_id=str(event["id"]),
                        event_type=str(event["type"]),
                    )
                    return
                except pika.exceptions.AMQPError as exc:
                    self._reset()
                    if attempt == 2:
                        raise HandOffError(f"RabbitMQ publish failed: {type(exc).__name__}") from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._reset()

    def _open_channel(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._connection = connect(self._url)
            channel = self._connection.channel()
            channel.confirm_delivery()
            declare_topology(channel, self._queue, with_queue=self._declare_queue)
            self._channel = channel
        return self._channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            # Already broken: a new connection is opened on the next publish.
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()

"""``reaper rabbitmq-relay``: consume the input queue and POST each message to the function.

The VM counterpart of Knative's RabbitmqSource and FunctionGraph's RabbitMQ trigger. Per message:
ack on 2xx; reject to ``<queue>.dead`` on 4xx (the function refused it, redelivery cannot help);
on 5xx or a connection error, republish through a wait bucket with growing delay, then ack.
Messages still ``x-reaper-due-at`` in the future are chained through another bucket. Bounded
prefetch; SIGTERM stops consuming, finishes the message in hand and closes cleanly (unacked
messages return to the queue).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

import httpx
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from function import outbound
from function.mediatypes import STRUCTURED
from function.schedulers.rabbitmq import ATTEMPTS, DUE_AT, connect, declare_topology, publish
from function.secret import Secret

_LOG = logging.getLogger("reaper.relay")
_EARLY_TOLERANCE_MS: Final = 500
_RETRY_CAP: Final = 300.0


def retry_delay(attempts: int) -> float:
    """Seconds before a message the function could not take is offered again."""
    return float(min(_RETRY_CAP, 2 ** max(attempts - 1, 0)))


def http_headers(headers: dict[str, Any], content_type: str | None) -> dict[str, str]:
    """The HTTP headers for an AMQP message: a structured event as it is, a binary one's ``ce-`` headers."""
    if content_type == STRUCTURED:
        return {"Content-Type": STRUCTURED}
    # Binary mode: messages published before the transport went structured, or by other producers.
    out = {name: str(value) for name, value in headers.items() if name.startswith("ce-")}
    out["Content-Type"] = content_type or "application/json"
    return out


class Relay:
    """Moves messages from the input queue to the function, one at a time, at-least-once."""

    def __init__(
        self, url: Secret, queue: str, target: str, *, prefetch: int = 16, timeout: float = 30.0
    ) -> None:
        self._url = url
        self._queue = queue
        self._target = target
        self._prefetch = prefetch
        self._http = outbound.client(timeout=timeout)
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the consume loop to finish after the message in hand."""
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped, reconnecting after broker failures."""
        while not self._stop.is_set():
            try:
                self._consume()
            except pika.exceptions.AMQPConnectionError as exc:
                _LOG.warning("broker connection lost; reconnecting", extra={"error": type(exc).__name__})
                self._stop.wait(2.0)
        self._http.close()

    def _consume(self) -> None:
        connection = connect(self._url)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            declare_topology(channel, self._queue)
            channel.basic_qos(prefetch_count=self._prefetch)
            _LOG.info("relay consuming", extra={"queue": self._queue, "target": self._target})
            for method, properties, body in channel.consume(self._queue, inactivity_timeout=0.5):
                if self._stop.is_set():
                    break
                if method is None or properties is None or body is None:
                    continue
                self.handle(channel, method, properties, body)
            channel.cancel()
        finally:
            if connection.is_open:
                connection.close()

    def handle(
        self, channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes
    ) -> None:
        """Deliver one message and settle it with the broker."""
        headers: dict[str, Any] = dict(properties.headers or {})
        tag = method.delivery_tag
        assert tag is not None
        due_at = headers.get(DUE_AT)
        if isinstance(due_at, int) and due_at - time.time() * 1000 > _EARLY_TOLERANCE_MS:
            remaining = (due_at - time.time() * 1000) / 1000
            self._republish(channel, tag, headers, body, properties, remaining)
            return
        started = time.perf_counter()
        try:
            response = self._http.post(
                self._target, content=body, headers=http_headers(headers, properties.content_type)
            )
            status: int | None = response.status_code
        except httpx.HTTPError as exc:
            status = None
            _LOG.warning("function unreachable", extra={"error": type(exc).__name__})
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        event_id = properties.message_id or headers.get("ce-id")
        if status is not None and 200 <= status < 300:
            channel.basic_ack(tag)
            _LOG.info(
                "relayed", extra={"event_id": event_id, "http_status": status, "latency_ms": latency_ms}
            )
        elif status is not None and 400 <= status < 500:
            channel.basic_reject(tag, requeue=False)
            _LOG.warning("refused; dead-lettered", extra={"event_id": event_id, "http_status": status})
        else:
            attempts = int(headers.get(ATTEMPTS, 0)) + 1
            headers[ATTEMPTS] = attempts
            delay = retry_delay(attempts)
            self._republish(channel, tag, headers, body, properties, delay)
            _LOG.warning(
                "function failed; retry later",
                extra={"event_id": event_id, "http_status": status, "attempts": attempts, "retry_in": delay},
            )

    def _republish(
        self,
        channel: BlockingChannel,
        tag: int,
        headers: dict[str, Any],
        body: bytes,
        properties: BasicProperties,
        delay: float,
    ) -> None:
        headers = {k: v for k, v in headers.items() if k != "x-death"}
        try:
            publish(
                channel,
                self._queue,
                headers,
                body,
                delay,
                message_id=properties.message_id,
                content_type=properties.content_type or "application/json",
                event_type=properties.type,
            )
        except pika.exceptions.AMQPChannelError:
            channel.basic_nack(tag, requeue=True)
            return
        channel.basic_ack(tag)

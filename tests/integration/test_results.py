"""Result events: logged always, POSTed to K_SINK when set; a sink that is down fails the step."""

from __future__ import annotations

import json
import logging

import pytest
from cloudevents.http import CloudEvent

from function.errors import HandOffError
from function.results import ResultSink
from reaper.devtools.procs import free_port
from tests.conftest import Receiver


def result() -> CloudEvent:
    return CloudEvent(
        {"type": "instance-terminated", "source": "/reaper", "id": "reaper-1"},
        {"instance_id": "i-1", "project_id": "p"},
    )


def test_result_is_posted_structured_and_logged(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """The sink receives a structured CloudEvent; the log line carries the whole result."""
    with caplog.at_level(logging.INFO, logger="reaper.results"):
        assert ResultSink(receiver.url).emit(result()) == "delivered"
    _, content_type, body = receiver.received[0]
    assert content_type == "application/cloudevents+json"
    assert json.loads(body)["id"] == "reaper-1"
    assert caplog.records[0].__dict__["result"] == {"instance_id": "i-1", "project_id": "p"}


def test_sink_5xx_is_retried_once_then_the_step_fails(receiver: Receiver) -> None:
    """A 5xx gets one more attempt; a persistent 5xx raises HandOffError (the step is redelivered);
    a 4xx is final (the log keeps the result)."""
    receiver.script = [503]
    assert ResultSink(receiver.url).emit(result()) == "delivered"
    receiver.script = [503, 502]
    with pytest.raises(HandOffError, match="sink"):
        ResultSink(receiver.url).emit(result())
    receiver.script = [400, 200]
    assert ResultSink(receiver.url).emit(result()) == "refused"
    assert len(receiver.received) == 1


def test_unreachable_sink_and_no_sink() -> None:
    """An unreachable sink fails the step; with no sink, results are only logged."""
    with pytest.raises(HandOffError):
        ResultSink(f"http://127.0.0.1:{free_port()}/").emit(result())
    assert ResultSink(None).emit(result()) == "no-sink"

"""The function's WSGI front: which bodies are read, QStash's final refusals, headers from the environ."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import EnvironHeaders

from function.inbound.admission import Admission, refusal
from function.inbound.headers import from_environ


@pytest.mark.parametrize(
    ("content_type", "binary", "refused"),
    [
        ("application/json", False, False),
        ("Application/JSON; charset=utf-8", False, False),
        ("application/cloudevents+json", False, False),
        ("", True, False),  # a binary CloudEvent with no Content-Type: ce-specversion says what it is
        ("", False, True),
        ("text/plain", True, True),  # what a browser can POST cross-site
        ("application/cloudevents-batch+json", False, True),
    ],
)
def test_only_json_bodies_are_read(content_type: str, binary: bool, refused: bool) -> None:
    """JSON and structured CloudEvents are read; everything else, batches included, is a 415 reason."""
    assert (refusal(content_type, binary) is not None) == refused


class Recorder:
    """A WSGI app answering ``status``, and the start_response that records what was sent."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.called = False
        self.sent: tuple[str, list[tuple[str, str]]] | None = None

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.called = True
        start_response(self.status, [("Content-Type", "application/json")])
        return [b"{}"]

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.sent = (status, headers)


def environ(**extra: str) -> dict[str, Any]:
    return {"PATH_INFO": "/", "CONTENT_TYPE": "application/json", **extra}


def test_a_body_not_read_is_refused_before_the_application() -> None:
    """415 with a JSON reason, and the application never called."""
    recorder = Recorder("200 OK")
    body = Admission(recorder.app)(environ(CONTENT_TYPE="text/plain"), recorder.start_response)
    assert recorder.sent is not None
    assert recorder.sent[0].startswith("415")
    assert json.loads(b"".join(body))["status"] == 415
    assert not recorder.called


def test_the_initializer_path_needs_no_body() -> None:
    """FunctionGraph's POST /init carries no JSON: it reaches the application."""
    recorder = Recorder("200 OK")
    Admission(recorder.app)(environ(PATH_INFO="/init", CONTENT_TYPE=""), recorder.start_response)
    assert recorder.called


@pytest.mark.parametrize(
    ("status", "signed", "sent", "final"),
    [
        ("422 Unprocessable Entity", True, "489 Non-Retryable", True),
        ("401 Unauthorized", True, "489 Non-Retryable", True),
        ("503 Service Unavailable", True, "503 Service Unavailable", False),  # QStash must retry
        ("200 OK", True, "200 OK", False),
        ("422 Unprocessable Entity", False, "422 Unprocessable Entity", False),  # not a QStash delivery
    ],
)
def test_a_qstash_delivery_is_told_a_refusal_is_final(
    status: str, signed: bool, sent: str, final: bool
) -> None:
    """A 4xx to a request with Upstash-Signature becomes 489 + Upstash-NonRetryable-Error; nothing else."""
    recorder = Recorder(status)
    extra = {"HTTP_UPSTASH_SIGNATURE": "eyJ..."} if signed else {}
    Admission(recorder.app)(environ(**extra), recorder.start_response)
    assert recorder.sent is not None
    assert recorder.sent[0] == sent
    assert (("Upstash-NonRetryable-Error", "true") in recorder.sent[1]) == final


header_names = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,20}\Z")
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30)


@given(
    http=st.dictionaries(header_names, header_values, max_size=8),
    content_type=st.one_of(st.none(), st.just(""), header_values),
    content_length=st.one_of(st.none(), st.just(""), st.integers(0, 10**6).map(str)),
)
def test_headers_are_what_werkzeug_reads_lower_cased(
    http: dict[str, str], content_type: str | None, content_length: str | None
) -> None:
    """Any environ: the same names (lower-cased) and values as werkzeug's EnvironHeaders."""
    wsgi: dict[str, Any] = {f"HTTP_{name}": value for name, value in http.items()}
    wsgi.update({"REQUEST_METHOD": "POST", "wsgi.input": None})
    if content_type is not None:
        wsgi["CONTENT_TYPE"] = content_type
    if content_length is not None:
        wsgi["CONTENT_LENGTH"] = content_length
    expected = {name.lower(): value for name, value in EnvironHeaders(wsgi).items()}
    assert from_environ(wsgi) == expected

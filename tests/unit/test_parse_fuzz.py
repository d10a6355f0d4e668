"""Fuzzing the whole parse stage: whatever arrives, only reaper's own errors come out (never a 500)."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from cloudevents import exceptions as ce_errors
from cloudevents.http import from_dict, from_http
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from function import catalog
from function.clouddc import check_id
from function.errors import BadEventError, ReaperError
from function.inbound import (
    InboundEvent,
    check_request,
    envelopes,
    events,
    from_cloudevent,
    from_request,
    strictjson,
)
from function.secret import Secret
from function.signing import EventSigner

SIGNER = EventSigner(Secret("fuzz-event-key-0123456789"))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
dates = st.one_of(
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})\Z"
    ),
    st.text(max_size=30),
    st.integers(),
)
ids = st.one_of(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,70}\Z"), st.text(max_size=80))
counters = st.one_of(st.integers(-5, 2**40), st.floats(allow_nan=False), st.text(max_size=5))
job_data = st.fixed_dictionaries(
    {
        "instance_id": ids,
        "project_id": ids,
        "origin_event_id": st.text(max_size=300),
        "started_at": dates,
        "deadline_at": dates,
        "checks": counters,
        "delete_attempts": counters,
        "failures": counters,
        "redeletes": counters,
    },
    optional={"deleted_at": st.one_of(st.none(), dates), "expired_at": st.one_of(st.none(), dates)},
)
batch_data = st.fixed_dictionaries(
    {
        "project_id": ids,
        "instance_ids": st.lists(ids, max_size=60),
        "origin_event_id": st.text(max_size=30),
        "started_at": dates,
        "deadline_at": dates,
        "checks": counters,
        "failures": counters,
        "redeletes": counters,
    }
)
expired_data = st.fixed_dictionaries(
    {}, optional={"instance_id": ids, "project_id": ids, "expired_at": dates, "reason": st.text(max_size=50)}
)
data = st.one_of(job_data, batch_data, expired_data, json_values)
attribute = st.one_of(st.text(max_size=300), scalars)
cloudevents = st.fixed_dictionaries(
    {
        "specversion": st.sampled_from(["1.0", "0.3", "", "2.0"]) | attribute,
        "id": attribute,
        "source": attribute,
        "type": st.sampled_from([*catalog.INBOUND_TYPES, "dev.knative.sources.ping"]) | attribute,
    },
    optional={"data": data, "subject": attribute, "reapersignature": attribute, "datacontenttype": attribute},
)
payloads = st.one_of(cloudevents, expired_data, json_values)


def text_of(value: Any) -> str:
    return json.dumps(value)


envelope_documents = st.one_of(
    cloudevents,
    payloads.map(
        lambda p: {"message": {"data": base64.b64encode(text_of(p).encode()).decode(), "messageId": "1"}}
    ),
    st.builds(lambda d, a: {"message": {"data": d, "attributes": a}}, st.text(max_size=20), json_values),
    payloads.map(lambda p: {"trigger_type": "TIMER", "user_event": text_of(p), "trigger_name": "t"}),
    st.builds(lambda u: {"trigger_type": "TIMER", "user_event": u}, json_values),
    st.builds(
        lambda messages, kind: {"trigger_type": kind, "records": [{"messages": messages}]},
        st.lists(payloads.map(text_of) | json_values, max_size=5),
        st.sampled_from(["RABBITMQ", "KAFKA", "DMS_RABBITMQ", ""]),
    ),
    st.builds(lambda r: {"records": r}, json_values),
    expired_data,
    json_values,
)
bodies = st.one_of(
    envelope_documents.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 5000, b'{"a": 1, "a": 2}', b"NaN", b"", b"\xff\xfe", b'{"specversion": "1.0"}']),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
headers = st.fixed_dictionaries(
    {
        "content-type": st.sampled_from(
            [
                "application/json",
                "application/cloudevents+json",
                "application/cloudevents-batch+json",
                "text/plain",
                "",
            ]
        )
    },
    optional={
        "ce-specversion": st.sampled_from(["1.0", "0.3"]) | header_text,
        "ce-id": header_text,
        "ce-source": header_text,
        "ce-type": st.sampled_from(list(catalog.INBOUND_TYPES)) | header_text,
        "ce-subject": header_text,
        "ce-reapersignature": header_text,
    },
)


def parse_stage(request_headers: dict[str, str], body: bytes) -> None:
    """Everything reaper does with a request before its first side effect."""
    check_request(request_headers, body)
    for event in envelopes.unwrap(request_headers, body, max_messages=100):
        if isinstance(event, BadEventError):
            continue
        # Refused for nearly everything: what matters is that the refusal is our error.
        with contextlib.suppress(BadEventError):
            SIGNER.verify(event.type, event.id, event.subject, event.data, event.signature)
        catalog.validate(event.type, event.data)
        if event.type in (catalog.INSTANCE_STATUS_CHECK, catalog.INSTANCE_DELETE_RETRY):
            catalog.job_from_data(event.data)
        elif event.type in (catalog.INSTANCE_BATCH_DELETE, catalog.INSTANCE_BATCH_CHECK):
            catalog.batch_from_data(event.data)
        elif event.type == catalog.INSTANCE_EXPIRED:
            check_id("instance_id", event.data.get("instance_id") or event.subject)
            if isinstance(event.data.get("expired_at"), str):
                catalog.parse_time(event.data["expired_at"])


@FUZZ
@given(request_headers=headers, body=bodies)
def test_only_reaper_errors_escape_the_parse_stage(request_headers: dict[str, str], body: bytes) -> None:
    """Any headers and body: parsing either succeeds or raises a ReaperError (a 4xx), nothing else."""
    with contextlib.suppress(ReaperError):
        parse_stage(request_headers, body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_type=st.sampled_from(sorted(catalog.INTERNAL_TYPES)), payload=st.one_of(job_data, batch_data))
def test_validated_follow_up_data_always_rebuilds(event_type: str, payload: dict[str, Any]) -> None:
    """Follow-up data that passes its schema always turns back into a job (no date or counter surprises)."""
    try:
        catalog.validate(event_type, payload)
    except BadEventError:
        return
    batch = event_type in (catalog.INSTANCE_BATCH_DELETE, catalog.INSTANCE_BATCH_CHECK)
    try:
        rebuilt = catalog.batch_from_data(payload) if batch else catalog.job_from_data(payload)
    except BadEventError as exc:
        refused = exc.status
    else:
        assert rebuilt.project_id == payload["project_id"]
        return
    assert refused == 422  # a pattern-shaped date that is no real instant


# -- the direct parse against the cloudevents SDK -------------------------------------------------
_SDK_ERRORS = (ce_errors.GenericException, ValueError, TypeError, AttributeError)


def sdk_reads(request_headers: dict[str, str], body: bytes) -> InboundEvent:
    """The event the cloudevents SDK reads from a request: how reaper parsed before it read them itself."""
    lowered = {k.lower(): v for k, v in request_headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/cloudevents-batch+json":
        raise BadEventError("batch", 415)
    structured = content_type == "application/cloudevents+json" or (
        "ce-specversion" not in lowered and content_type == "application/json"
    )
    if structured:
        document = strictjson.loads(body, "body") if body else None
        if not isinstance(document, dict) or "specversion" not in document:
            raise BadEventError("not a structured CloudEvent")
        attributes: dict[str, object] = document
    elif "ce-specversion" in lowered:
        attributes = {k[3:]: v for k, v in lowered.items() if k.startswith("ce-")}
    else:
        raise BadEventError("not a CloudEvent")
    for name, limit in events._REQUIRED_ATTRIBUTES.items():  # the SDK has no size limits: reaper's own
        value = attributes.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise BadEventError(f"{name} missing or too long")
    try:
        event = (
            from_dict(attributes) if structured else from_http(lowered, body, data_unmarshaller=lambda b: b)
        )
    except _SDK_ERRORS as exc:
        raise BadEventError(f"not a valid CloudEvent: {exc}") from None
    return from_cloudevent(event)


def read(parse: Any, request_headers: dict[str, str], body: bytes) -> InboundEvent | int:
    """The event a parser reads, or the status it refuses with."""
    try:
        result: InboundEvent = parse(request_headers, body)
    except BadEventError as exc:
        return exc.status
    return result


@FUZZ
@given(request_headers=headers, body=bodies)
@example(
    {
        "content-type": "application/json",
        "ce-specversion": "2.0",
        "ce-id": "a",
        "ce-source": "/s",
        "ce-type": "instance-expired",
    },
    b'{"instance_id": "i-1"}',
)
@example(
    {"content-type": "application/cloudevents+json"},
    b'{"specversion": "0.3", "id": "a", "source": "/s", "type": "instance-expired", "data": {}}',
)
@example(
    {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "a",
        "ce-source": "/s",
        "ce-type": "instance-sweep",
    },
    b"",
)
def test_the_direct_parse_reads_what_the_sdk_reads(request_headers: dict[str, str], body: bytes) -> None:
    """Every request: the same event from both, or a refusal from both (a 4xx, whatever its words)."""
    direct, sdk = read(from_request, request_headers, body), read(sdk_reads, request_headers, body)
    if isinstance(sdk, int):
        assert isinstance(direct, int)
        assert 400 <= direct < 500
    else:
        assert direct == sdk


@pytest.mark.parametrize("version", ["2.0", "1", "0.2"])
def test_a_specversion_the_sdk_does_not_read_is_refused(version: str) -> None:
    """Only 1.0 and 0.3 are CloudEvents the SDK (the CloudEvent target's parser) reads: so here too."""
    with pytest.raises(BadEventError, match="specversion"):
        from_request(
            {
                "ce-specversion": version,
                "ce-id": "a",
                "ce-source": "/s",
                "ce-type": "instance-expired",
                "content-type": "application/json",
            },
            b'{"instance_id": "i-1"}',
        )

"""The event catalog: schemas are valid, samples match them, jobs and results round-trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent, from_dict
from hypothesis import example, given
from hypothesis import strategies as st

from function import catalog, inbound
from function.core import Job, Result
from function.errors import BadEventError
from function.secret import Secret
from function.signing import EventSigner

EVENTS = Path(__file__).parents[2] / "events"
TYPES = sorted(p.stem for p in (EVENTS / "schemas").glob("*.json"))


def test_every_type_has_schema_and_sample() -> None:
    """The catalog lists six types, each with a schema and a sample."""
    assert set(TYPES) == {*catalog.INBOUND_TYPES, *catalog.RESULT_TYPES.values()}
    assert sorted(p.stem for p in (EVENTS / "samples").glob("*.json")) == TYPES


@pytest.mark.parametrize("event_type", TYPES)
def test_samples_validate(event_type: str) -> None:
    """Each sample is a CloudEvent whose data matches its type's schema."""
    sample = json.loads((EVENTS / "samples" / f"{event_type}.json").read_text())
    assert sample["type"] == event_type
    catalog.validate(event_type, from_dict(sample).get_data())


def test_validation_names_the_field() -> None:
    """A schema violation is a 422 naming the offending field."""
    with pytest.raises(BadEventError, match="instance_id") as caught:
        catalog.validate("instance-expired", {"instance_id": "../x"})
    assert caught.value.status == 422


def test_job_round_trips_through_a_follow_up() -> None:
    """A job survives serialisation into a follow-up event's data (to the millisecond)."""
    job = Job("i-1", "p-1", "ev-1", 1_800_000_000.5, 1_800_007_200.5, 1_800_000_001.25, 3, 2, 1, 0)
    data = catalog.job_to_data(job)
    catalog.validate("instance-status-check", data)
    assert catalog.job_from_data(data) == job
    fresh = Job("i-1", "p-1", "ev-1", 1_800_000_000.0, 1_800_007_200.0)
    assert catalog.job_from_data(catalog.job_to_data(fresh)) == fresh


@pytest.mark.parametrize(
    "result",
    [
        Result("terminated", at=1e9, already_absent=True),
        Result("failed", "retries-exhausted", at=1e9, http_status=503, error_code="X", error_msg="m"),
        Result("skipped", "dry-run", at=1e9),
    ],
)
def test_results_match_their_schemas(result: Result) -> None:
    """Every result kind serialises to data its schema accepts."""
    job = Job("i-1", "p-1", "ev-1", 1e9, 1e9 + 60)
    catalog.validate(catalog.RESULT_TYPES[result.kind], catalog.result_to_data(job, result))


def test_event_ids_are_deterministic() -> None:
    """The same key gives the same id; another key another id."""
    assert catalog.event_id("a", "b") == catalog.event_id("a", "b")
    assert catalog.event_id("a", "b") != catalog.event_id("a", "c")
    event = catalog.make_event("instance-terminated", {}, key="k", source="/r", subject="i-1", now=0)
    assert event["id"] == catalog.event_id("instance-terminated", "k")


def test_inbound_parsing_of_both_modes() -> None:
    """Binary and structured requests parse to the same event; subject carries the instance id."""
    data = {"project_id": "p-1"}
    binary = inbound.from_request(
        {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "instance-expired",
         "ce-subject": "i-9", "Content-Type": "application/json"},
        json.dumps(data).encode(),
    )  # fmt: skip
    body = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "instance-expired",
        "subject": "i-9",
        "data": data,
    }
    structured = inbound.from_request({"content-type": "application/json"}, json.dumps(body).encode())
    assert binary == structured
    assert binary.subject == "i-9"
    event = CloudEvent({"type": "instance-expired", "source": "/s", "id": "2"}, b'{"instance_id": "i-1"}')
    assert inbound.from_cloudevent(event).data == {"instance_id": "i-1"}


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "text/plain"}, b"x", 415),
        ({}, b"x", 400),
        ({"content-type": "application/json"}, b'{"id": 1}', 400),
        ({"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0", "id": "1"}', 400),
    ],
)
def test_inbound_refusals(headers: dict[str, str], body: bytes, status: int) -> None:
    """Requests that are not CloudEvents are refused with the right status."""
    with pytest.raises(BadEventError) as caught:
        inbound.from_request(headers, body)
    assert caught.value.status == status


@pytest.mark.parametrize("event_type", TYPES)
def test_schemas_are_valid_draft_07(event_type: str) -> None:
    """Each schema is itself valid JSON Schema (draft-07, what the compiled validator implements)."""
    from jsonschema import Draft7Validator

    schema = json.loads((EVENTS / "schemas" / f"{event_type}.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("event_type", sorted(catalog.INTERNAL_TYPES))
def test_internal_samples_carry_a_signature_that_verifies(event_type: str) -> None:
    """Each internal sample is signed as documented (the sample key); a changed byte breaks the signature."""
    sample = json.loads((EVENTS / "samples" / f"{event_type}.json").read_text())
    signer = EventSigner(Secret("sample-event-key-0123456789"))
    signer.verify(
        sample["type"], sample["id"], sample.get("subject"), sample["data"], sample["reapersignature"]
    )
    with pytest.raises(BadEventError) as refused:
        signer.verify(
            sample["type"],
            sample["id"] + "x",
            sample.get("subject"),
            sample["data"],
            sample["reapersignature"],
        )
    assert refused.value.status == 401
    assert "sample-event-key-0123456789" in (EVENTS / "README.md").read_text()


@given(st.floats(min_value=-1e10, max_value=2.5e11, allow_nan=False))
@example(1764000000.001)  # 0.001 is 0.000999... as a float: rounded to microseconds first, as datetime does
@example(1764000000.9999995)  # rounds up into the next second
@example(-0.0000001)
@example(-1.5)  # before 1970: the fraction is negative
def test_rfc3339_writes_what_datetime_writes(epoch: float) -> None:
    """The fast formatter agrees with ``datetime``'s RFC 3339 to the millisecond, for any instant."""
    expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert catalog.rfc3339(epoch) == expected

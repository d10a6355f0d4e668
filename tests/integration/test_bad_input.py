"""Bad requests get a 4xx with a JSON error body and never reach the CloudDC API."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Emulator, Function

pytestmark = pytest.mark.integration

BINARY = {"ce-specversion": "1.0", "ce-id": "bad-1", "ce-source": "/tests", "ce-type": "instance-expired"}
CE_JSON = {"content-type": "application/cloudevents+json"}


def structured(data: object, **attrs: str) -> bytes:
    event = {"specversion": "1.0", "id": "bad-2", "source": "/tests", "type": "instance-expired", **attrs}
    return json.dumps({**event, "data": data}).encode()


def binary(data: object, content_type: str = "application/json") -> tuple[dict[str, str], bytes]:
    return {**BINARY, "content-type": content_type}, json.dumps(data).encode()


NESTED_40: object = {}
for _ in range(40):
    NESTED_40 = {"n": NESTED_40}
DUPLICATE_KEYS = (
    b'{"specversion": "1.0", "id": "dup-1", "source": "/t", "type": "instance-expired",'
    b' "data": {"instance_id": "i-harmless", "instance_id": "i-victim"}}'
)
BAD_IDS = ["a/b", "..", "../etc", "has space", "", "x" * 300, "-leading-dash", "i-1?x=1", "i-1%2F"]

CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("non-CloudEvent JSON", {"content-type": "application/json"}, b'{"hello": "world"}'),
    (
        "missing id attribute",
        CE_JSON,
        json.dumps({"specversion": "1.0", "source": "/t", "type": "instance-expired"}).encode(),
    ),
    (
        "missing type header",
        {k: v for k, v in BINARY.items() if k != "ce-type"} | {"content-type": "application/json"},
        b"{}",
    ),
    ("JSON array body", CE_JSON, b"[1, 2, 3]"),
    (
        "batch content type",
        {"content-type": "application/cloudevents-batch+json"},
        b'[{"specversion": "1.0"}]',
    ),
    ("undecodable bytes structured", CE_JSON, b"\xff\xfe\x00garbage"),
    ("undecodable bytes binary", {**BINARY, "content-type": "application/json"}, b"\xff\xfe\x00garbage"),
    ("unknown type", CE_JSON, structured({"instance_id": "i-1"}, type="com.example.other")),
    ("data is a string", CE_JSON, structured("i-1")),
    ("data is a list", *binary(["i-1"])),
    ("data missing instance id", CE_JSON, structured({"project_id": "proj-test"})),
    ("bad project id", CE_JSON, structured({"instance_id": "i-1", "project_id": "../x"})),
    ("empty body", {"content-type": "application/json"}, b""),
    ("plain text", {"content-type": "text/plain"}, b"delete i-1 please"),
    ("forged follow-up", CE_JSON, structured({"instance_id": "i-1"}, type="instance-status-check")),
    ("100k nested arrays", CE_JSON, b"[" * 100_000 + b"]" * 100_000),
    ("100k nested arrays, binary data", {**BINARY, "content-type": "application/json"}, b"[" * 100_000),
    ("data nested 40 levels", CE_JSON, structured({"instance_id": "i-1", "x": NESTED_40})),
    ("ce- headers, structured type, array body", {**BINARY, **CE_JSON}, b"[1]"),
    ("empty id", CE_JSON, structured({"instance_id": "i-1"}, id="")),
    ("300-character id", CE_JSON, structured({"instance_id": "i-1"}, id="x" * 300)),
    (
        "binary without ce-id",
        {k: v for k, v in BINARY.items() if k != "ce-id"} | {"content-type": "application/json"},
        b"{}",
    ),
    ("empty source", CE_JSON, structured({"instance_id": "i-1"}, source="")),
    ("duplicate instance_id keys", CE_JSON, DUPLICATE_KEYS),
    ("NaN in data", {**BINARY, "content-type": "application/json"}, b'{"instance_id": "i-1", "n": NaN}'),
    (
        "expired_at not a date",
        CE_JSON,
        structured({"instance_id": "i-1", "expired_at": "2024-13-45T99:99:99Z"}),
    ),
    *[(f"instance id {i!r:.20}", *binary({"instance_id": i})) for i in BAD_IDS],
    *[(f"subject {i!r:.20}", CE_JSON, structured({}, subject=i)) for i in BAD_IDS if i],
]


@pytest.mark.parametrize("target", ["function", "http_function"])
@pytest.mark.parametrize(("case", "headers", "body"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_4xx_json_and_no_api_call(
    case: str,
    headers: dict[str, str],
    body: bytes,
    target: str,
    emulator: Emulator,
    request: pytest.FixtureRequest,
) -> None:
    """Each malformed request is refused with a 4xx and a JSON error; the emulator sees no call."""
    fn: Function = request.getfixturevalue(target)
    before = len(emulator.calls())
    response = httpx.post(fn.url, headers=headers, content=body, timeout=10)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]
    assert len(emulator.calls()) == before


@pytest.mark.parametrize("target", ["function", "http_function"])
def test_oversized_body_is_413(target: str, emulator: Emulator, request: pytest.FixtureRequest) -> None:
    """A 2 MB body is refused with 413 and a JSON error before anything else happens."""
    fn: Function = request.getfixturevalue(target)
    before = len(emulator.calls())
    body = structured({"instance_id": "i-1", "reason": "x" * (2 * 1024 * 1024)})
    response = httpx.post(fn.url, headers=CE_JSON, content=body, timeout=10)
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]
    assert len(emulator.calls()) == before


def test_batch_is_415_and_names_the_fix(http_function: Function, function: Function) -> None:
    """Batched CloudEvents are refused with 415 by both targets, saying to send one per request."""
    for fn in (function, http_function):
        response = httpx.post(
            fn.url, headers={"content-type": "application/cloudevents-batch+json"}, content=b"[]"
        )
        assert response.status_code == 415
        assert "one per request" in response.json()["error"]


def test_unknown_type_lists_accepted_types(http_function: Function) -> None:
    """The 400 for an unknown type says which types are accepted."""
    response = httpx.post(http_function.url, headers=CE_JSON, content=structured({}, type="nope"))
    assert response.status_code == 400
    assert "instance-expired" in response.json()["error"]

"""The JSON reaper writes on every event: what the standard library would write, in meaning."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from function import jsonlog, jsontext
from function.secret import Secret

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def documents(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=30,
    )


@given(value=documents(st.text(max_size=8)), sort_keys=st.booleans())
def test_it_writes_what_the_standard_library_writes(value: Any, sort_keys: bool) -> None:
    """Any JSON value (integers beyond 64 bits, non-ASCII text): the same document, keys in the same order."""
    expected = json.dumps(value, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"))
    written = jsontext.dumps(value, sort_keys=sort_keys)
    # Pairs in order: the same keys, values and (sorted) order; numbers may be spelled apart (1e-05, 0.00001).
    assert json.loads(written, object_pairs_hook=list) == json.loads(expected, object_pairs_hook=list)


@given(value=documents(st.one_of(st.text(max_size=8), st.integers(-5, 5), st.none())))
def test_keys_that_are_not_strings_are_written_as_strings(value: Any) -> None:
    """As the standard library writes them: 1 as "1", None as "null"."""
    assert json.loads(jsontext.dumps(value)) == json.loads(json.dumps(value))


def test_numbers_json_cannot_hold_are_null() -> None:
    """NaN and infinities are not JSON: written as null, where the standard library wrote NaN/Infinity."""
    assert json.loads(jsontext.dumps([float("nan"), float("inf"), 1.5])) == [None, None, 1.5]


@dataclass
class Call:
    """Like outbound.Call: a field its repr leaves out holds a credential."""

    path: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def test_a_dataclass_is_written_by_its_repr_never_its_fields() -> None:
    """As the standard library's ``default=str`` wrote it: a header its repr hides stays hidden."""
    written = jsontext.dumps({"call": Call("/v1", {"X-Auth-Token": "tok-123456"})}, default=str).decode()
    assert "tok-123456" not in written
    assert json.loads(written) == {"call": "Call(path='/v1')"}


def test_a_secret_in_a_log_line_stays_masked() -> None:
    """A Secret passed as a log field is written by its mask; its value is redacted in any case."""
    secret = Secret("jsontext-secret-0123456789")
    line = jsonlog.JsonFormatter().format(
        logging.makeLogRecord({"msg": "m", "levelname": "INFO", "field": secret, "raw": secret.reveal()})
    )
    assert "jsontext-secret-0123456789" not in line
    assert json.loads(line)["field"] == "Secret('***')"


def test_what_no_encoder_writes_is_refused() -> None:
    """An object without ``default`` raises TypeError, as json.dumps does."""
    with pytest.raises(TypeError):
        jsontext.dumps({"x": object()})

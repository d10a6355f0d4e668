"""JSON Schema validation of event data against `events/schemas` (in the wheel: `function/schemas`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import fastjsonschema

from function.errors import BadEventError


def _schema_dir() -> Path:
    packaged = Path(__file__).parents[1] / "schemas"  # the wheel's copy of events/schemas
    return packaged if packaged.is_dir() else Path(__file__).parents[2] / "events" / "schemas"


@functools.cache
def _validator(event_type: str) -> Callable[[object], object]:
    # fastjsonschema compiles each schema to Python once: ~8 ms to import where jsonschema takes
    # ~60 ms, and validation per event in microseconds (docs/benchmarks.md, cold start).
    schema = json.loads((_schema_dir() / f"{event_type}.json").read_text(encoding="utf-8"))
    return fastjsonschema.compile(schema)


def validate(event_type: str, data: object) -> None:
    """Raise ``BadEventError`` (422) unless ``data`` matches the schema of ``event_type``."""
    try:
        _validator(event_type)(data)
    except fastjsonschema.JsonSchemaValueException as error:
        raise BadEventError(f"{event_type}: {error.message}", status=422) from None

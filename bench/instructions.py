"""Count the instructions one event costs the server, under callgrind: a figure the machine's load cannot move.

``python -m bench.instructions LABEL N PROJECT`` serves N instance-expired events (binary mode) in-process
through the functions-framework app (the emulator and delay service it calls run outside, not counted);
``make bench`` runs it under ``valgrind --tool=callgrind`` with two values of N and divides the difference.
LABEL (``FUNCTIONS``): reaper on its shipped HTTP target or on its CloudEvent target, the CloudEvent
no-op every figure is compared with, or an HTTP no-op that reads nothing.
"""

from __future__ import annotations

import json
import sys

import functions_framework

from bench.stack import BENCH, NOOP_SOURCE, SHIPPED_TARGET
from reaper.devtools.procs import FUNCTION_SOURCE

# label -> (source, target, signature type)
FUNCTIONS = {
    "no-op": (NOOP_SOURCE, "handle", "cloudevent"),
    "reaper": (FUNCTION_SOURCE, *SHIPPED_TARGET),
    "reaper, CloudEvent target": (FUNCTION_SOURCE, "handle", "cloudevent"),
    "no-op, HTTP": (BENCH / "noop_http_main.py", "handle", "http"),
}


def main() -> int:
    """Serve the events; the environment (endpoint, delay service, keys) comes from the caller."""
    label, count, project = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    source, target, signature = FUNCTIONS[label]
    client = functions_framework.create_app(target, str(source), signature).test_client()  # type: ignore[no-untyped-call]
    for n in range(count):
        instance = f"{project}-{n:05d}"
        headers = {
            "ce-specversion": "1.0",
            "ce-id": f"instr-{instance}",
            "ce-source": "/bench",
            "ce-type": "instance-expired",
            "content-type": "application/json",
        }
        answer = client.post(
            "/", headers=headers, data=json.dumps({"instance_id": instance, "project_id": project})
        )
        if answer.status_code >= 300:
            print(answer.status_code, answer.get_data(as_text=True), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

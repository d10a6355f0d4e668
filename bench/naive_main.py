"""The naive baseline: delete, then poll the status in-process every 5 s until terminated.

This is what cloud-custodian's Huawei provider, aws-nuke and SDK waiters do; it lives here, not in
the product, to be measured beside reaper.
"""

import json
import os
import sys
import time

import functions_framework
import httpx
from cloudevents.http import CloudEvent

POLL = float(os.environ.get("NAIVE_POLL_SECONDS", "5"))
CLIENT = httpx.Client(
    base_url=os.environ["CLOUDDC_ENDPOINT"],
    headers={"X-Auth-Token": os.environ["CLOUDDC_AUTH_TOKEN"]},
    timeout=10,
    limits=httpx.Limits(max_connections=512),
)
SINK = os.environ.get("K_SINK")


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Delete and wait, polling, until the instance is gone."""
    started = time.perf_counter()
    data: dict[str, str] = event.get_data() or {}
    path = f"/v1/{data['project_id']}/instances/{data['instance_id']}"
    CLIENT.delete(path)
    while True:
        time.sleep(POLL)
        answer = CLIENT.get(path + "/status")
        if answer.status_code == 404 or answer.json().get("state") in ("terminated", "failed", "error"):
            break
    busy_ms = (time.perf_counter() - started) * 1000
    line = {"message": "handled", "instance_id": data["instance_id"], "busy_ms": busy_ms}
    print(json.dumps(line), file=sys.stderr, flush=True)
    if SINK:
        body = {"type": "instance-terminated", "data": {"instance_id": data["instance_id"]}}
        CLIENT.post(SINK, json=body)

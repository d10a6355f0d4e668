"""The shipped container contracts, run here without a container engine: the function boots under the
Knative manifest's own constraints, and the image's own command serves FunctionGraph's custom-image
contract (``POST /init``, ``POST /invoke`` on port 8000)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from function.schedulers import rabbitmq
from function.secret import Secret
from reaper.devtools.procs import FUNCTION_SOURCE, Process, free_port
from tests.conftest import TOKEN, Emulator, new_id, wait_until
from tests.integration.test_deploy import pair

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
FG_PROJECT = "0123456789abcdef0123456789abcdef"


def dockerfile() -> tuple[dict[str, str], list[str], str]:
    """The image's ENV, CMD and USER, as the Dockerfile says them."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair(item) for item in line[4:].split())
    [cmd] = [json.loads(line[4:]) for line in text.splitlines() if line.startswith("CMD ")]
    [user] = [line[5:].strip() for line in text.splitlines() if line.startswith("USER ")]
    return env, cmd, user


def knative_container() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [service] = list(yaml.safe_load_all((DEPLOY / "knative" / "service.yaml").read_text()))
    spec = service["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return container, spec.get("volumes", [])


def _blocked(target: Path, writable: Iterable[str]) -> Path | None:
    """The highest directory on the way to ``target`` an unprivileged user cannot pass once the declared
    mounts are in place (covered by one of them, or without the others' x bit); None when none is."""
    for mount in map(Path, writable):
        if target.is_relative_to(mount) and target != mount:
            return mount / target.relative_to(mount).parts[0]
    for step in [*reversed(target.parents), target][1:]:
        if not step.stat().st_mode & 0o001:
            return step
    return None


def private_root_script(argv: list[str], writable: dict[str, int], uid: str, needed: list[Path]) -> str:
    """A shell script for ``unshare --mount``: every mount read-only, the declared mounts as tmpfs, each
    ``needed`` directory reachable (read-only) for ``uid``, then the command as ``uid`` with no privileges
    to regain. Everything happens in the private namespace: the host's files and modes are untouched."""
    lines = ["set -eu", "for v in $(env | sed -n 's/^\\(COVERAGE[A-Z_]*\\)=.*/\\1/p'); do unset \"$v\"; done"]
    reach: list[tuple[Path, Path, int]] = []
    for n, target in enumerate(needed):
        blocked = _blocked(target, writable)
        if blocked is not None:
            reach.append((target, blocked, n))
            lines.append(
                f"mkdir -p /dev/shm/reach{n} && mount --bind {_quote(str(target))} /dev/shm/reach{n}"
            )
    lines.append(
        "for m in $(awk '$2 !~ \"^/(proc|sys|dev)\" {print $2}' /proc/self/mounts | sort -u); do "
        'mount -o remount,bind,ro "$m" 2>/dev/null || true; done'
    )
    lines += [f"mount -t tmpfs -o mode=1777,size={size} tmpfs {path}" for path, size in writable.items()]
    for target, blocked, n in reach:
        if blocked.exists() and not any(blocked.is_relative_to(w) for w in writable):
            lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {_quote(str(blocked))}")
        lines.append(f"mkdir -p {_quote(str(target))}")
        for child in sorted(target.iterdir()):
            point = _quote(str(child))
            lines.append(f"{'mkdir' if child.is_dir() else 'touch'} {point}")
            lines.append(f"mount --bind /dev/shm/reach{n}/{_quote(child.name)} {point}")
            lines.append(f"mount -o remount,bind,ro {point}")
    lines.append(f"exec setpriv --reuid={uid} --regid={uid} --clear-groups --no-new-privs -- "
                 + " ".join(_quote(a) for a in argv))  # fmt: skip
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("setpriv") is None, reason="util-linux")
def test_boots_under_the_knative_manifests_constraints(emulator: Emulator, tmp_path: Path) -> None:
    """Read-only root except the manifest's emptyDir mounts, as the image's non-root user: it serves."""
    container, volumes = knative_container()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    empty_dirs = {v["name"]: v["emptyDir"].get("sizeLimit", "16Mi") for v in volumes if "emptyDir" in v}
    writable = {
        m["mountPath"]: int(re.sub(r"Mi$", "", empty_dirs[m["name"]])) * 1024 * 1024
        for m in container.get("volumeMounts", [])
        if m["name"] in empty_dirs
    }
    _, _, user = dockerfile()
    # What the process reads: the interpreter's installation and this checkout (with its venv).
    needed = [Path(sys.base_prefix).resolve(), ROOT]
    port = free_port()
    env = {
        "CLOUDDC_ENDPOINT": emulator.url,
        "CLOUDDC_PROJECT_ID": FG_PROJECT,
        "CLOUDDC_AUTH_TOKEN": TOKEN,
        "REAPER_EVENT_KEY": "k" * 32,
        "REAPER_INBOUND_AUTH": "platform",
        "REAPER_SCHEDULER": "local",
        "REAPER_DELAY_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
    }
    argv = [str(BIN / "reaper"), "serve", "--source", str(FUNCTION_SOURCE), "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    script = tmp_path / "boot.sh"
    # The settings travel in the environment, not in the script: no secret in a file.
    script.write_text(private_root_script(argv, writable, user, needed))
    log = (tmp_path / "function.log").open("wb")
    process = Process(
        ["unshare", "--mount", "--propagation", "private", "sh", str(script)], port, env=env, stderr=log
    )
    try:
        process.start(timeout=30)
        headers = {"ce-specversion": "1.0", "ce-type": "instance-sweep", "ce-source": "/t", "ce-id": new_id()}
        answer = httpx.post(process.url, json={"project_id": FG_PROJECT}, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
    finally:
        process.stop()
        log.close()
    assert "No usable temporary directory" not in (tmp_path / "function.log").read_text()


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_functiongraph_custom_image_contract(emulator: Emulator, tmp_path: Path) -> None:
    """The Dockerfile's CMD with its ENV and function.json's settings answers POST /init and
    POST /invoke on port 8000, taking the agency token from X-CFF-Auth-Token ("include keys")."""
    if not port_is_free(8000):
        pytest.fail("port 8000 (FunctionGraph's custom-image port) is taken on this machine")
    image_env, cmd, _ = dockerfile()
    function = json.loads((DEPLOY / "functiongraph" / "function.json").read_text())
    settings = json.loads(function["user_data"])
    assert settings["PORT"] == "8000"
    env = {
        **{k: v for k, v in image_env.items() if k not in ("PATH", "FUNCTION_SOURCE")},
        **settings,
        "FUNCTION_SOURCE": str(FUNCTION_SOURCE),  # the image's path to the same file
        "HOST": "127.0.0.1",  # loopback only here; the image listens on every interface
        "CLOUDDC_ENDPOINT": emulator.url,
        "REAPER_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "REAPER_EVENT_KEY": "k" * 32,
    }
    # As FunctionGraph's RabbitMQ trigger does: a queue of its own bound to the transport's exchange.
    env["REAPER_RABBITMQ_QUEUE"] = exchange = f"reaper.test.{new_id()}"
    connection = rabbitmq.connect(Secret(env["REAPER_RABBITMQ_URL"]))
    channel = connection.channel()
    rabbitmq.declare_topology(channel, exchange, with_queue=False)
    channel.queue_declare(f"{exchange}.trigger", auto_delete=True)
    channel.queue_bind(f"{exchange}.trigger", exchange)
    log = (tmp_path / "function.log").open("wb")
    process = Process([str(BIN / cmd[0]), *cmd[1:]], 8000, env=env, stderr=log)
    instance = emulator.add(
        new_id(), project_id=FG_PROJECT, metadata={"reaper-expires-at": "2020-01-01T00:00:00Z"}
    )
    try:
        process.start(timeout=30)
        assert httpx.post(f"{process.url}/init", json={}, timeout=10).status_code == 200
        timer = json.loads((DEPLOY / "functiongraph" / "timer-trigger.json").read_text())
        event = {
            "version": "v1.0",
            "time": "2026-11-28T00:00:00+08:00",
            "trigger_type": "TIMER",
            "trigger_name": timer["event_data"]["name"],
            "user_event": timer["event_data"]["user_event"],
        }
        headers = {"X-CFF-Auth-Token": TOKEN, "X-CFF-Request-Id": new_id()}
        answer = httpx.post(f"{process.url}/invoke", json=event, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        # The sweep found the instance and handed its batch-delete to the trigger's queue.
        body = wait_until(lambda: channel.basic_get(f"{exchange}.trigger", auto_ack=True)[2], 10, "hand-off")
        handed_on = json.loads(body)
        assert handed_on["type"] == "instance-batch-delete"
        assert instance in handed_on["data"]["instance_ids"]
    finally:
        process.stop()
        log.close()
        channel.queue_delete(f"{exchange}.trigger")
        for bucket in rabbitmq.BUCKETS_MS:
            channel.queue_delete(rabbitmq.wait_queue(exchange, bucket))
        channel.exchange_delete(exchange)
        connection.close()
    assert [c["call"] for c in emulator.calls() if c["project_id"] == FG_PROJECT][:1] == ["list"]
    assert TOKEN not in (tmp_path / "function.log").read_text()

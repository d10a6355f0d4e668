"""A fake ``gcloud`` that keeps the resources a deploy script creates and enforces the preconditions
the real services enforce (run as ``python -m tests.fakes.gcloud`` through a ``gcloud`` shim on PATH).

It fails, as gcloud would, when a step runs before what it needs: deploying a Cloud Run service
whose runtime account cannot read a mounted secret, a push subscription without its dead-letter
topic, and so on. It also refuses what the deploy must not do (an unbounded Cloud Tasks queue, a
push subscription that retries a poison message for 7 days). State lives in ``$FAKE_GCLOUD_STATE``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_NUMBER = "123456789012"
AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"


class RefusedError(Exception):
    """What gcloud (or the service behind it) would answer with an error."""


def parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Words before the flags, and the flags (``--name=value`` or ``--name``)."""
    words: list[str] = []
    flags: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            flags[name] = value
        else:
            words.append(arg)
    return words, flags


class Cloud:
    """The resources of one fake project and the rules for creating them."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.s = state
        for key in ("accounts", "queues", "secrets", "grants", "topics", "subscriptions", "jobs", "bindings"):
            self.s.setdefault(key, {})
        self.s.setdefault("service", None)

    def run(self, words: list[str], flags: dict[str, str]) -> str:
        command = " ".join(words[:3])
        handler: dict[str, Callable[[], object]] = {
            "config set project": lambda: "",
            "iam service-accounts describe": lambda: self._exists("accounts", words[3]),
            "iam service-accounts create": lambda: self._create_account(words[3]),
            "iam service-accounts add-iam-policy-binding": lambda: self._bind_account(words[3], flags),
            "tasks queues describe": lambda: self._exists("queues", words[3]),
            "tasks queues create": lambda: self._create_queue(words[3], flags),
            "secrets describe": lambda: self._exists("secrets", words[2]),
            "secrets create": lambda: self._put("secrets", words[2], sys.stdin.read().strip() != ""),
            "secrets add-iam-policy-binding": lambda: self._grant_secret(words[2], flags),
            "run deploy": lambda: self._deploy(words[2], flags),
            "run services describe": lambda: self._describe_service(flags),
            "run services update": lambda: self._need_service(),
            "run services add-iam-policy-binding": lambda: self._bind_service(flags),
            "projects add-iam-policy-binding": lambda: self._need_account(flags["member"]),
            "projects describe": lambda: PROJECT_NUMBER,
            "scheduler jobs describe": lambda: self._exists("jobs", words[3]),
            "scheduler jobs create": lambda: self._create_job(words[4], flags),
            "pubsub topics describe": lambda: self._exists("topics", words[3]),
            "pubsub topics create": lambda: self._put("topics", words[3], True),
            "pubsub topics add-iam-policy-binding": lambda: self._bind("topics", words[3], flags),
            "pubsub subscriptions describe": lambda: self._exists("subscriptions", words[3]),
            "pubsub subscriptions create": lambda: self._create_subscription(words[3], flags),
            "pubsub subscriptions add-iam-policy-binding": lambda: self._bind(
                "subscriptions", words[3], flags
            ),
        }
        for prefix, act in handler.items():
            if command.startswith(prefix):
                return str(act())
        raise RefusedError(f"unknown command: gcloud {' '.join(words)}")

    # -- helpers -------------------------------------------------------------------------------
    def _exists(self, kind: str, name: str) -> str:
        if name not in self.s[kind]:
            raise RefusedError(f"NOT_FOUND: {kind[:-1]} {name}")
        return name

    def _put(self, kind: str, name: str, value: Any) -> str:
        if name in self.s[kind]:
            raise RefusedError(f"ALREADY_EXISTS: {kind[:-1]} {name}")
        self.s[kind][name] = value
        return ""

    def _need_account(self, member: str) -> str:
        email = member.removeprefix("serviceAccount:")
        if member != AGENT and email not in self.s["accounts"]:
            raise RefusedError(f"INVALID_ARGUMENT: service account {email} does not exist")
        return ""

    def _create_account(self, name: str) -> str:
        project = self.s.get("project", "proj")
        return self._put("accounts", f"{name}@{project}.iam.gserviceaccount.com", True)

    def _bind_account(self, email: str, flags: dict[str, str]) -> str:
        self._exists("accounts", email)
        return self._need_account(flags["member"])

    def _create_queue(self, name: str, flags: dict[str, str]) -> str:
        if "max-attempts" not in flags or int(flags["max-attempts"]) < 1:
            raise RefusedError("deploy rule: a queue without --max-attempts retries a 4xx task forever")
        return self._put("queues", name, flags)

    def _grant_secret(self, name: str, flags: dict[str, str]) -> str:
        self._exists("secrets", name)
        self._need_account(flags["member"])
        self.s["grants"].setdefault(name, []).append(flags["member"])
        return ""

    def _deploy(self, service: str, flags: dict[str, str]) -> str:
        account = flags.get("service-account", "")
        self._need_account(account)
        for mount in filter(None, flags.get("set-secrets", "").split(",")):
            secret = mount.split("=", 1)[1].split(":", 1)[0]
            self._exists("secrets", secret)
            if f"serviceAccount:{account}" not in self.s["grants"].get(secret, []):
                raise RefusedError(
                    f"PERMISSION_DENIED: {account} cannot access secret {secret} "
                    "(Cloud Run checks secret access at deploy time)"
                )
        self.s["service"] = {"name": service, "url": f"https://{service}-abc123-ew.a.run.app"}
        return ""

    def _need_service(self) -> str:
        if self.s["service"] is None:
            raise RefusedError("NOT_FOUND: the Cloud Run service is not deployed")
        return ""

    def _describe_service(self, flags: dict[str, str]) -> str:
        self._need_service()
        return str(self.s["service"]["url"]) if "status.url" in flags.get("format", "") else ""

    def _bind_service(self, flags: dict[str, str]) -> str:
        self._need_service()
        return self._need_account(flags["member"])

    def _create_job(self, name: str, flags: dict[str, str]) -> str:
        self._need_service()
        if flags.get("uri", "").rstrip("/") != self.s["service"]["url"]:
            raise RefusedError("deploy rule: the scheduler job must call the deployed service")
        self._need_account("serviceAccount:" + flags.get("oidc-service-account-email", ""))
        return self._put("jobs", name, flags)

    def _bind(self, kind: str, name: str, flags: dict[str, str]) -> str:
        self._exists(kind, name)
        self._need_account(flags["member"])
        self.s["bindings"].setdefault(f"{kind}/{name}", []).append(flags["role"])
        return ""

    def _create_subscription(self, name: str, flags: dict[str, str]) -> str:
        self._exists("topics", flags.get("topic", ""))
        if "push-endpoint" in flags:
            self._need_service()
            self._need_account("serviceAccount:" + flags.get("push-auth-service-account", ""))
            dead = flags.get("dead-letter-topic")
            if not dead or "max-delivery-attempts" not in flags:
                raise RefusedError(
                    "deploy rule: a push subscription without a dead-letter topic retries for 7 days"
                )
            self._exists("topics", dead)
        return self._put("subscriptions", name, flags)


def main(argv: list[str]) -> int:
    """Run one gcloud command against the state file; exit 1 with gcloud's kind of message on refusal."""
    path = Path(os.environ["FAKE_GCLOUD_STATE"])
    state = json.loads(path.read_text()) if path.exists() else {}
    words, flags = parse(argv)
    if words[:3] == ["config", "set", "project"]:
        state["project"] = words[3]
    cloud = Cloud(state)
    try:
        output = cloud.run(words, flags)
    except RefusedError as exc:
        print(f"ERROR: (gcloud) {exc}", file=sys.stderr)
        return 1
    finally:
        path.write_text(json.dumps(state))
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

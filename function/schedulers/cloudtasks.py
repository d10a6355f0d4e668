"""The ``cloudtasks`` transport: Google Cloud Tasks REST v2 over httpx, no SDK.

One task per follow-up: ``scheduleTime`` = now + delay, an ``httpRequest`` POSTing the structured
CloudEvent to ``REAPER_SELF_URL`` with an OIDC token, and a task name derived from the dedup key so a
duplicate schedule answers 409 ALREADY_EXISTS, which counts as scheduled.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import httpx
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from function import outbound
from function.errors import HandOffError
from function.secret import Secret
from function.settings import CLOUDTASKS_MAX_DELAY

_TOKEN_PATH: Final = "/computeMetadata/v1/instance/service-accounts/default/token"  # noqa: S105 - a path
_REFRESH_MARGIN: Final = 60.0


class MetadataToken:
    """An access token from the metadata server, cached until shortly before it expires."""

    def __init__(self, http: httpx.Client, host: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._url = f"http://{host}{_TOKEN_PATH}"
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._expires = 0.0

    def get(self) -> Secret:
        """The cached token, fetched anew when it is within a minute of expiry."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires - _REFRESH_MARGIN:
                self._fetch()
            assert self._token is not None
            return self._token

    def _fetch(self) -> None:
        try:
            response = self._http.get(self._url, headers={"Metadata-Flavor": "Google"})
            response.raise_for_status()
            body = response.json()
            self._token = Secret(str(body["access_token"]), scope="rotating")
            self._expires = self._clock() + float(body.get("expires_in", 300))
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise HandOffError(f"metadata server gave no access token ({type(exc).__name__})") from None


def task_id(dedup_key: str) -> str:
    """A valid Cloud Tasks task id (letters, digits, '-', '_') derived from the dedup key."""
    return "reaper-" + hashlib.sha256(dedup_key.encode()).hexdigest()


def schedule_time(epoch: float) -> str:
    """RFC 3339 UTC timestamp as Cloud Tasks' ``scheduleTime`` expects."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class CloudTasksScheduler:
    """Creates one Cloud Task per delayed follow-up."""

    def __init__(
        self,
        *,
        queue: str,
        target_url: str,
        service_account: str,
        audience: str | None = None,
        api_base: str = "https://cloudtasks.googleapis.com",
        metadata_host: str = "metadata.google.internal",
        timeout: float = 10.0,
        deadline: float = outbound.DEADLINE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._target = target_url
        self._service_account = service_account
        self._audience = audience or target_url
        self._endpoint = f"{api_base.rstrip('/')}/v2/{queue}/tasks"
        self._http = outbound.client(timeout=timeout, deadline=deadline)
        self._clock = clock
        self.token = MetadataToken(self._http, metadata_host)

    def schedule(self, event: CloudEvent, delay: float, dedup_key: str) -> None:
        """Create the task; an existing task with the same name means it is already scheduled."""
        if delay > CLOUDTASKS_MAX_DELAY:
            raise HandOffError(f"delay {delay:.0f} s exceeds Cloud Tasks' 30-day limit")
        headers, body = to_structured(event)
        task = {
            "name": f"{self._queue}/tasks/{task_id(dedup_key)}",
            "scheduleTime": schedule_time(self._clock() + delay),
            "httpRequest": {
                "url": self._target,
                "httpMethod": "POST",
                "headers": {"Content-Type": headers["content-type"]},
                "body": base64.b64encode(body).decode("ascii"),
                "oidcToken": {"serviceAccountEmail": self._service_account, "audience": self._audience},
            },
        }
        authorization = {"Authorization": f"Bearer {self.token.get().reveal()}"}
        try:
            response = self._http.post(self._endpoint, json={"task": task}, headers=authorization)
        except httpx.HTTPError as exc:
            raise HandOffError(f"Cloud Tasks unreachable: {type(exc).__name__}") from None
        if response.status_code == 409 or response.is_success:
            return
        raise HandOffError(f"Cloud Tasks answered {response.status_code}")

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

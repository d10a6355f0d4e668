"""A loopback fake of Google Cloud Tasks v2 (tasks.create) and the GCE metadata token endpoint.

It checks each request against the documented API — field names, the task name format, base64 body,
RFC 3339 ``scheduleTime``, the 30-day limit, the bearer token it issued — refuses unknown fields the
way Google's API does, answers 409 ALREADY_EXISTS for a duplicate task name, and performs the
delivery itself at ``scheduleTime``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.fakes.common import DelayedDelivery, LoopbackServer

TASK_FIELDS = {"name", "scheduleTime", "httpRequest", "dispatchDeadline"}
HTTP_REQUEST_FIELDS = {"url", "httpMethod", "headers", "body", "oauthToken", "oidcToken"}
OIDC_FIELDS = {"serviceAccountEmail", "audience"}
METHODS = {"POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
QUEUE_PATH = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks$")
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


def _google_error(code: int, status: str, message: str) -> Response:
    body = {"error": {"code": code, "message": message, "status": status}}
    return Response(json.dumps(body), code, mimetype="application/json")


class FakeCloudTasks:
    def __init__(self, expires_in: int = 3599) -> None:
        self.expires_in = expires_in
        self.token_requests = 0
        self.issued: set[str] = set()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.problems: list[str] = []
        self.answers: list[int] = []
        self._lock = threading.Lock()
        self.delivery = DelayedDelivery(sign=lambda _: {"Authorization": "Bearer fake-oidc-token"})
        self.server = LoopbackServer(Request.application(self._app))
        self.url = self.server.url

    def close(self) -> None:
        self.delivery.stop()
        self.server.close()

    def _app(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            return self._token(request)
        match = QUEUE_PATH.match(request.path)
        if match and request.method == "POST":
            response = self._create(request, match.group(1))
            self.answers.append(response.status_code)
            return response
        return _google_error(404, "NOT_FOUND", f"no route {request.path}")

    def _token(self, request: Request) -> Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return Response("Missing Metadata-Flavor:Google header", 403)
        with self._lock:
            self.token_requests += 1
            token = f"ya29.fake-{self.token_requests}"
            self.issued.add(token)
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return Response(json.dumps(body), 200, mimetype="application/json")

    def _bad(self, message: str) -> Response:
        self.problems.append(message)
        return _google_error(400, "INVALID_ARGUMENT", message)

    def _create(self, request: Request, queue: str) -> Response:
        bearer = request.headers.get("Authorization", "")
        if not bearer.startswith("Bearer ") or bearer[7:] not in self.issued:
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        try:
            payload = json.loads(request.get_data())
        except ValueError:
            return self._bad("Invalid JSON payload received.")
        unknown = set(payload) - {"task", "responseView"}
        if unknown or not isinstance(payload.get("task"), dict):
            return self._bad(f"Invalid JSON payload received. Unknown name {sorted(unknown)}")
        task = payload["task"]
        problem = self._check_task(task, queue)
        if problem:
            return self._bad(problem)
        with self._lock:
            if task["name"] in self.tasks:
                return _google_error(409, "ALREADY_EXISTS", "Requested entity already exists")
            self.tasks[task["name"]] = task
        http = task["httpRequest"]
        due = datetime.fromisoformat(task["scheduleTime"].replace("Z", "+00:00")).timestamp()
        self.delivery.add(due, http["url"], base64.b64decode(http["body"]), dict(http.get("headers", {})))
        return Response(json.dumps({**task, "view": "BASIC"}), 200, mimetype="application/json")

    @staticmethod
    def _check_task(task: dict[str, Any], queue: str) -> str | None:
        if set(task) - TASK_FIELDS:
            return f"Unknown name in task: {sorted(set(task) - TASK_FIELDS)}"
        name = task.get("name", "")
        if not re.fullmatch(re.escape(queue) + r"/tasks/[A-Za-z0-9_-]{1,500}", name):
            return f"task name {name!r} must be {queue}/tasks/TASK_ID"
        when = task.get("scheduleTime", "")
        if not isinstance(when, str) or not RFC3339.match(when):
            return f"scheduleTime {when!r} is not RFC 3339 UTC"
        due = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        if due > time.time() + 30 * 24 * 3600:
            return "scheduleTime is more than 30 days in the future"
        http = task.get("httpRequest")
        if not isinstance(http, dict) or set(http) - HTTP_REQUEST_FIELDS:
            return "httpRequest missing or has unknown fields"
        if not str(http.get("url", "")).startswith(("http://", "https://")):
            return "httpRequest.url must be an absolute http(s) URL"
        if http.get("httpMethod") not in METHODS:
            return "httpRequest.httpMethod is not an HttpMethod"
        headers = http.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return "httpRequest.headers must map strings to strings"
        try:
            base64.b64decode(http.get("body", ""), validate=True)
        except (binascii.Error, ValueError):
            return "httpRequest.body must be base64"
        oidc = http.get("oidcToken")
        if oidc is not None and (set(oidc) - OIDC_FIELDS or "@" not in str(oidc.get("serviceAccountEmail"))):
            return "oidcToken must have serviceAccountEmail (and optional audience)"
        return None

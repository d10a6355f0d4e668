"""The emulator's HTTP face: CloudDC and IAM routes, fault injection, and admin endpoints."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any, Final

import flask
from werkzeug.serving import BaseWSGIServer

from reaper.devtools.emulator.fleet import Config, Fault, Fleet
from reaper.servers import json_response, threaded_server

_MAX_IDS_PER_LIST: Final = 100
_MAX_IDS_PER_BATCH: Final = 50
_THROTTLED: Final = {"error_code": "APIG.0308", "error_msg": "The throttling threshold has been reached"}
_UNAUTHORIZED: Final = {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"}
_TOKEN_EXPIRED: Final = {"error_code": "APIGW.0307", "error_msg": "The token must be updated."}


class InjectedResetError(Exception):
    """Raised after the socket was reset on purpose: nothing more may be written."""


def create_app(fleet: Fleet) -> flask.Flask:
    """Build the emulator's Flask app around ``fleet``."""
    app = flask.Flask("clouddc-emulator")

    def api_call(
        call: str, project_id: str, instance_id: str | None, scripted_by: str | None = None
    ) -> Fault | None:
        """Latency and faults for one call; ``scripted_by``: the instance whose script applies (else the
        one in the path)."""
        if fleet.config.latency:
            time.sleep(fleet.config.latency)
        if fleet.over_rate_limit(project_id):
            return Fault(status=429)  # the gateway's throttle: no Retry-After
        scripted_by = scripted_by or instance_id
        fault = fleet.next_fault(project_id, scripted_by, call) if scripted_by else None
        fault = fault or fleet.random_fault()
        if fault and fault.delay:
            flask.g.fault = "delay"  # the call log shows which answers came late
            time.sleep(fault.delay)
        if fault and fault.reset:
            fleet.record(_entry(call, project_id, instance_id, None, "reset"))
            _reset_connection()
        return fault

    def refusal() -> dict[str, str] | None:
        """None when the request is authenticated (token or AK/SK signature); else the 401 body."""
        request = flask.request
        if "Authorization" in request.headers:
            problem = fleet.keys.check(
                request.method,
                request.path,
                request.args.items(multi=True),
                dict(request.headers.items()),
                request.get_data(),
            )
            return (
                None
                if problem is None
                else {**_UNAUTHORIZED, "error_msg": f"{_UNAUTHORIZED['error_msg']}: {problem}"}
            )
        token = request.headers.get("X-Auth-Token")
        if fleet.token_expired(token):
            return _TOKEN_EXPIRED
        return None if fleet.token_valid(token) else _UNAUTHORIZED

    def answer(
        call: str, project_id: str, instance_id: str | None, status: int, body: Any, **headers: str
    ) -> flask.Response:
        fleet.record(_entry(call, project_id, instance_id, status, None))
        response = json_response(body, status) if body is not None else flask.Response("", status)
        response.headers.update(headers)
        return response

    def faulted(call: str, project_id: str, instance_id: str | None, fault: Fault) -> flask.Response:
        assert fault.status is not None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        body = _THROTTLED if fault.status == 429 else {"error_code": "CDC.5000", "error_msg": "injected"}
        if fault.echo:
            token = flask.request.headers.get("X-Auth-Token", "")
            body = {"error_code": "CDC.0401", "error_msg": f"token {token} is not valid for this operation"}
        return answer(call, project_id, instance_id, fault.status, body, **headers)

    @app.delete("/v1/<project_id>/instances/<instance_id>")
    def delete_instance(project_id: str, instance_id: str) -> flask.Response:
        fault = api_call("delete", project_id, instance_id)
        if fault and fault.status:
            return faulted("delete", project_id, instance_id, fault)
        if (refused := refusal()) is not None:
            return answer("delete", project_id, instance_id, 401, refused)
        status, body = fleet.delete(project_id, instance_id)
        return answer("delete", project_id, instance_id, status, body)

    @app.get("/v1/<project_id>/instances/<instance_id>/status")
    def show_status(project_id: str, instance_id: str) -> flask.Response:
        fault = api_call("status", project_id, instance_id)
        if fault and fault.status:
            return faulted("status", project_id, instance_id, fault)
        if (refused := refusal()) is not None:
            return answer("status", project_id, instance_id, 401, refused)
        status, body = fleet.status(project_id, instance_id)
        return answer("status", project_id, instance_id, status, body)

    @app.get("/v1/<project_id>/instances")
    def list_instances(project_id: str) -> flask.Response:
        args = flask.request.args
        ids = [i for i in args.get("instance_id", "").split(",") if i] or None
        # A listing by ids takes the first id's scripted "list" faults; the call log names no instance.
        fault = api_call("list", project_id, None, scripted_by=ids[0] if ids else None)
        flask.g.batch_ids = ids  # the call log names the ids asked for, whatever the answer
        if fault is None and ids is None:
            fault = fleet.next_paged_list_fault()
            if fault and fault.delay:  # a slow listing: the answer is computed after the wait, as api_call's
                flask.g.fault = "delay"
                time.sleep(fault.delay)
        if fault and fault.status:
            return faulted("list", project_id, None, fault)
        if (refused := refusal()) is not None:
            return answer("list", project_id, None, 401, refused)
        if ids is not None and len(ids) > _MAX_IDS_PER_LIST:
            body = {"error_code": "CDC.0400", "error_msg": "at most 100 instance ids"}
            return answer("list", project_id, None, 400, body)
        states = {s for s in args.get("instance_state", "").split(",") if s} or None
        limit = min(max(args.get("limit", 100, type=int) or 100, 1), 1000)
        body = fleet.list_instances(project_id, ids, states, args.get("marker") or None, limit)
        return answer("list", project_id, None, 200, body)

    @app.post("/v1/<project_id>/instances/batch-delete")
    def batch_delete(project_id: str) -> flask.Response:
        body = flask.request.get_json(silent=True)
        ids = body.get("instance_id_set") if isinstance(body, dict) else None
        first = str(ids[0]) if isinstance(ids, list) and ids else None
        # Like a listing by ids: a batch-delete takes its first id's scripted "batch-delete" faults.
        fault = api_call("batch-delete", project_id, None, scripted_by=first)
        if fault and fault.status:
            return faulted("batch-delete", project_id, None, fault)
        if (refused := refusal()) is not None:
            return answer("batch-delete", project_id, None, 401, refused)
        if not isinstance(ids, list) or not ids or len(ids) > _MAX_IDS_PER_BATCH:
            body = {"error_code": "CDC.0400", "error_msg": "instance_id_set: 1 to 50 ids"}
            return answer("batch-delete", project_id, None, 400, body)
        for instance_id in ids:
            fleet.delete(project_id, str(instance_id))
        flask.g.batch_ids = [str(i) for i in ids]
        accepted = {"instances": [{"id": str(i)} for i in ids]}  # DeleteInstancesResponse
        return answer("batch-delete", project_id, None, 202, accepted)

    @app.post("/v3/auth/tokens")
    def issue_token() -> flask.Response:
        body = flask.request.get_json(silent=True) or {}
        identity = body.get("auth", {}).get("identity", {})
        methods = identity.get("methods")
        if not methods:
            return answer("iam", "-", None, 400, {"error_code": "IAM.0001", "error_msg": "bad body"})
        password = identity.get("password", {}).get("user", {}).get("password")
        if fleet.config.iam_password is not None and password != fleet.config.iam_password:
            return answer("iam", "-", None, 401, {"error_code": "IAM.0004", "error_msg": "wrong credentials"})
        token, expires = fleet.issue_token()
        expires_at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(expires))
        payload = {"token": {"expires_at": expires_at, "methods": methods}}
        return answer("iam", "-", None, 201, payload, **{"X-Subject-Token": token})

    @app.get("/openstack/latest/securitykey")
    def security_key() -> flask.Response:
        ak, sk, token, expires = fleet.keys.issue_temporary(fleet.config.metadata_key_ttl)
        expires_at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(expires))
        credential = {"access": ak, "secret": sk, "securitytoken": token, "expires_at": expires_at}
        return answer("metadata", "-", None, 200, {"credential": credential})

    @app.post("/admin/instances")
    def admin_add() -> flask.Response:
        specs = flask.request.get_json()
        specs = specs if isinstance(specs, list) else [specs]
        try:
            added = [fleet.describe(fleet.add(spec)) for spec in specs]
        except (KeyError, ValueError, TypeError) as exc:
            return _admin_error(f"bad instance spec: {exc}")
        return flask.make_response(flask.jsonify(added), 201)

    @app.get("/admin/instances")
    def admin_instances() -> flask.Response:
        return flask.jsonify(fleet.snapshot())

    @app.get("/admin/calls")
    def admin_calls() -> flask.Response:
        return flask.jsonify(list(fleet.calls))

    @app.post("/admin/config")
    def admin_config() -> flask.Response:
        try:
            fleet.config.update(flask.request.get_json() or {})
        except KeyError as exc:
            return _admin_error(f"unknown setting {exc}")
        return flask.jsonify(vars(fleet.config) | {"token": "***" if fleet.config.token else None})

    @app.post("/admin/reset")
    def admin_reset() -> flask.Response:
        fleet.reset()
        return flask.jsonify({"reset": True})

    @app.post("/admin/tokens/expire")
    def admin_expire() -> flask.Response:
        fleet.expire_tokens()
        return flask.jsonify({"expired": True})

    @app.get("/healthz")
    def healthz() -> flask.Response:
        return flask.jsonify({"ok": True})

    @app.errorhandler(InjectedResetError)
    def _after_reset(_exc: InjectedResetError) -> flask.Response:
        return flask.make_response("", 500)

    return app


def _entry(
    call: str, project_id: str, instance_id: str | None, status: int | None, fault: str | None
) -> dict[str, Any]:
    return {
        "call": call,
        "method": flask.request.method,
        "path": flask.request.path,
        "project_id": project_id,
        "instance_id": instance_id,
        "status": status,
        "fault": fault or flask.g.get("fault"),
        "ids": flask.g.get("batch_ids"),
    }


def _admin_error(message: str) -> flask.Response:
    return flask.make_response(flask.jsonify({"error": message}), 400)


def _reset_connection() -> None:
    """Abort the TCP connection with an RST, as a crashing load balancer would."""
    environ = flask.request.environ
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # shutdown, not close: the server still holds file objects on this socket, so close()
        # would not release it; the client sees the connection drop with no answer.
        sock.shutdown(socket.SHUT_RDWR)
    raise InjectedResetError


def make_emulator_server(host: str, port: int, fleet: Fleet | None = None) -> tuple[BaseWSGIServer, Fleet]:
    """A threaded server for the emulator (port 0 picks a free one) and the fleet behind it."""
    fleet = fleet or Fleet(Config())
    return threaded_server(host, port, create_app(fleet)), fleet

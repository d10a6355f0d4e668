"""Deploy facts proven rather than restated: the Cloud Run script against a fake gcloud that enforces
the services' preconditions, and the FunctionGraph / EventGrid bodies against the field sets of
Huawei's published API models (the SDK packages, dev dependencies only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkclouddc.v1 import model as clouddc_model
from huaweicloudsdkeg.v1 import model as eg_model
from huaweicloudsdkfunctiongraph.v2 import model as fg_model

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
SCRIPT = DEPLOY / "cloudrun" / "deploy.sh"


# -- Cloud Run: the script's steps in a valid order ----------------------------------------------
def run_deploy(tmp_path: Path, script_text: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    shim = tmp_path / "bin" / "gcloud"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\ncd "{ROOT}" && exec "{sys.executable}" -m tests.fakes.gcloud "$@"\n')
    shim.chmod(0o755)
    state = tmp_path / "gcloud.json"
    # The user's own part, before the script: the AK/SK secrets (README, Cloud Run page).
    state.write_text(json.dumps({"secrets": {"clouddc-ak": True, "clouddc-sk": True}}))
    script = tmp_path / "deploy.sh"
    script.write_text(script_text)
    env = {
        **os.environ,
        "PATH": f"{shim.parent}:{os.environ['PATH']}",
        "FAKE_GCLOUD_STATE": str(state),
        "PROJECT": "proj",
        "CLOUDDC_PROJECT_ID": "0123456789abcdef0123456789abcdef",
    }
    done = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done, json.loads(state.read_text())


def test_cloudrun_script_runs_in_a_valid_order(tmp_path: Path) -> None:
    """Every step finds what it needs; poison messages end in a dead-letter topic, tasks are bounded."""
    done, state = run_deploy(tmp_path, SCRIPT.read_text())
    assert done.returncode == 0, done.stderr
    runtime = "serviceAccount:reaper-runtime@proj.iam.gserviceaccount.com"
    assert all(runtime in state["grants"][s] for s in ("clouddc-ak", "clouddc-sk", "reaper-event-key"))
    push = state["subscriptions"]["reaper-push"]
    assert (push["dead-letter-topic"], push["max-delivery-attempts"]) == ("instance-expired-dead", "5")
    assert "reaper-dead" in state["subscriptions"]  # the dead letters are kept for an operator
    assert state["bindings"]["topics/instance-expired-dead"] == ["roles/pubsub.publisher"]
    assert state["bindings"]["subscriptions/reaper-push"] == ["roles/pubsub.subscriber"]
    assert int(state["queues"]["reaper-follow-ups"]["max-attempts"]) <= 100


def _drop_block(text: str, start: str, end: str) -> str:
    head, rest = text.split(start, 1)
    return head + rest.split(end, 1)[1]


MUTATIONS: dict[str, tuple[Callable[[str], str], str]] = {
    "deploy before the secret grants": (
        lambda t: _drop_block(t, "for secret in", "done\n") + "",
        "secret access at deploy time",
    ),
    "no dead-letter topic": (
        lambda t: t.replace('--dead-letter-topic="${DEAD_TOPIC}" --max-delivery-attempts=5', ""),
        "7 days",
    ),
    "unbounded task queue": (lambda t: t.replace("--max-attempts=20 ", ""), "retries a 4xx task forever"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_fake_gcloud_catches_a_broken_script(mutation: str, tmp_path: Path) -> None:
    """The fake is not a rubber stamp: each broken variant of the script stops at the broken step."""
    change, message = MUTATIONS[mutation]
    broken = change(SCRIPT.read_text())
    assert broken != SCRIPT.read_text()
    done, _ = run_deploy(tmp_path, broken)
    assert done.returncode != 0
    assert message in done.stderr


# -- Huawei API models -----------------------------------------------------------------------
def unknown_fields(document: Any, model: type, module: Any, where: str = "") -> list[str]:
    """Keys of ``document`` the model does not define, following nested model and list types."""
    if not isinstance(document, dict):
        return []
    names = {json_key: attr for attr, json_key in model.attribute_map.items()}  # type: ignore[attr-defined]
    problems: list[str] = []
    for key, value in document.items():
        if key not in names:
            problems.append(f"{where}{key}")
            continue
        kind = model.openapi_types[names[key]]  # type: ignore[attr-defined]
        inner = kind[5:-1] if kind.startswith("list[") else kind
        nested = getattr(module, inner, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(nested, type):
                problems += unknown_fields(item, nested, module, f"{where}{key}.")
    return problems


def deploy_json(name: str) -> dict[str, Any]:
    return dict(json.loads((DEPLOY / "functiongraph" / name).read_text()))


@pytest.mark.parametrize(
    ("name", "model", "module"),
    [
        ("function.json", fg_model.CreateFunctionRequestBody, fg_model),
        ("function-config.json", fg_model.UpdateFunctionConfigRequestBody, fg_model),
        ("timer-trigger.json", fg_model.CreateFunctionTriggerRequestBody, fg_model),
        ("dms-rabbitmq-trigger.json", fg_model.CreateFunctionTriggerRequestBody, fg_model),
        ("eventgrid-subscription.json", eg_model.SubscriptionCreateReq, eg_model),
        ("async-config.json", fg_model.UpdateFunctionAsyncInvokeConfigRequestBody, fg_model),
    ],
)
def test_functiongraph_bodies_use_only_published_fields(name: str, model: type, module: Any) -> None:
    """Each request body's fields exist in the API model it is sent as (no invented field survives)."""
    assert unknown_fields(deploy_json(name), model, module) == []


def test_unknown_fields_are_found() -> None:
    """The checker itself finds a field the model lacks, at any depth."""
    body = {"trigger_type_code": "RABBITMQ", "event_data": {"password": "x", "queue_name": "q"}}
    found = unknown_fields(body, fg_model.CreateFunctionTriggerRequestBody, fg_model)
    assert found == ["event_data.password", "event_data.queue_name"]


def test_rabbitmq_trigger_names_an_exchange_and_its_required_fields() -> None:
    """The API requires exchange_name and access_password for RABBITMQ; the exchange is the transport's."""
    data = deploy_json("dms-rabbitmq-trigger.json")["event_data"]
    assert {"instance_id", "exchange_name", "access_password", "batch_size"} <= data.keys()
    assert (
        data["exchange_name"]
        == json.loads(deploy_json("function.json")["user_data"])["REAPER_RABBITMQ_QUEUE"]
    )
    assert json.loads(deploy_json("function.json")["user_data"])["REAPER_RABBITMQ_DECLARE_QUEUE"] == "false"


def test_eventgrid_filter_and_function_target_shape() -> None:
    """Filter rules are {field: [{op, values}]} with source first; a function target has urn,
    invoke_type and agency_name (the model's detail description)."""
    subscription = deploy_json("eventgrid-subscription.json")
    [source] = subscription["sources"]
    assert "source" in source["filter"]
    for rules in source["filter"].values():
        assert all(rule.keys() == {"op", "values"} and rule["op"] == "StringIn" for rule in rules)
    [target] = subscription["targets"]
    assert target["detail"].keys() == {"urn", "invoke_type", "agency_name"}
    assert set(target["detail"]) - {"agency_name"} <= set(eg_model.SinkFGParameters.attribute_map.values())
    assert target["detail"]["invoke_type"] in ("SYNC", "ASYNC")


def test_function_json_includes_keys_for_token_from_request() -> None:
    """REAPER_TOKEN_FROM_REQUEST needs FunctionGraph's "include keys" (enable_auth_in_header), which
    CreateFunction does not take: UpdateFunctionConfig turns it on, with the same settings."""
    function, config = deploy_json("function.json"), deploy_json("function-config.json")
    assert json.loads(function["user_data"])["REAPER_TOKEN_FROM_REQUEST"] == "true"
    assert config["enable_auth_in_header"] is True
    assert config["user_data"] == function["user_data"]  # an update must not drop the settings


def test_clouddc_answers_of_the_emulator_match_the_models() -> None:
    """The emulator's batch-delete and status answers use the API's field names."""
    from reaper.devtools.emulator.fleet import Fleet

    fleet = Fleet()
    fleet.add({"id": "i-1", "project_id": "p", "outcome": "fail", "termination_seconds": 0})
    fleet.delete("p", "i-1")
    status, body = fleet.status("p", "i-1")
    assert status == 200
    assert unknown_fields(body, clouddc_model.ShowInstanceStatusResponse, clouddc_model) == []
    assert body["error"].keys() <= set(clouddc_model.ErrorStatus.attribute_map.values())
    operation_states = {
        v
        for k, v in vars(clouddc_model.InstanceOperationStatus).items()
        if k.isupper() and isinstance(v, str)
    }
    assert body["operation_state"] in operation_states


# The RabbitmqSource's spec as its CRD publishes it: knative-extensions/eventing-rabbitmq,
# config/source/300-rabbitmqsource.yaml at bd1ee997d372 (2026-07-23). Its resources config has these
# fields and no others; ``queueType`` belongs to the broker's config, not the source's.
RABBITMQ_SOURCE_SPEC: dict[str, set[str] | None] = {
    "rabbitmqResourcesConfig": {"vhost", "parallelism", "exchangeName", "predeclared", "queueName"},
    "rabbitmqClusterReference": {"connectionSecret", "name", "namespace"},
    "delivery": {"backoffDelay", "backoffPolicy", "retry"},
    "serviceAccountName": None,
    "adapterContainerName": None,
    "sink": None,
}


def _knative(name: str) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all((DEPLOY / "knative" / name).read_text()) if doc]


def unknown_source_fields(spec: dict[str, Any]) -> list[str]:
    """The fields of a RabbitmqSource spec that its published CRD does not have."""
    unknown = [name for name in spec if name not in RABBITMQ_SOURCE_SPEC]
    for name, fields in RABBITMQ_SOURCE_SPEC.items():
        if fields is not None and isinstance(spec.get(name), dict):
            unknown += [f"{name}.{field}" for field in spec[name] if field not in fields]
    return unknown


def test_the_rabbitmq_source_uses_only_fields_of_its_published_crd() -> None:
    """Issue 27: no field the API server would reject or silently drop; the check finds one."""
    sources = [doc for doc in _knative("rabbitmq.yaml") if doc["kind"] == "RabbitmqSource"]
    assert sources
    assert [unknown_source_fields(doc["spec"]) for doc in sources] == [[]] * len(sources)
    careless = {**sources[0]["spec"]}
    careless["rabbitmqResourcesConfig"] = {**careless["rabbitmqResourcesConfig"], "queueType": "classic"}
    assert unknown_source_fields(careless) == ["rabbitmqResourcesConfig.queueType"]


def test_the_knative_service_is_cluster_local() -> None:
    """Issue 27: the Service that may be asked for deletes is reachable from inside the cluster only
    (Knative Serving's ``networking.knative.dev/visibility: cluster-local`` label)."""
    (service,) = [doc for doc in _knative("service.yaml") if doc["kind"] == "Service"]
    assert service["metadata"].get("labels", {}).get("networking.knative.dev/visibility") == "cluster-local"


# FunctionGraph's timer cron, as its user guide states it ("Cron Expressions for a Function Timer Trigger",
# support.huaweicloud.com/usermanual-functiongraph/functiongraph_01_0908.html): "seconds minutes hours
# day-of-month month day-of-week", day-of-week optional; "?" is allowed in day-of-month only.
CRON_FIELDS: list[tuple[str, str]] = [
    ("seconds", ",-*/"),
    ("minutes", ",-*/"),
    ("hours", ",-*/"),
    ("day-of-month", ",-*?/"),
    ("month", ",-*/"),
    ("day-of-week", ",-*/"),
]


def cron_problems(expression: str) -> list[str]:
    """Why FunctionGraph's timer would not take ``expression`` (``@every`` forms aside)."""
    if expression.startswith("@every "):
        return []
    fields = expression.split()
    if not 5 <= len(fields) <= 6:
        return [f"{len(fields)} fields, not 5 or 6"]
    problems = []
    for value, (name, special) in zip(fields, CRON_FIELDS, strict=False):
        odd = {ch for ch in value if not ch.isalnum() and ch not in special}
        if odd:
            problems.append(f"{name}: {sorted(odd)} not allowed")
    return problems


def test_the_timer_triggers_cron_is_one_functiongraph_takes() -> None:
    """Issue 27: the shipped sweep schedule parses by the documented field order and characters; the
    check refuses the "?" in day-of-week the file used to carry."""
    trigger = json.loads((DEPLOY / "functiongraph" / "timer-trigger.json").read_text())
    assert cron_problems(trigger["event_data"]["schedule"]) == []
    assert cron_problems("0 */15 * * * ?") == ["day-of-week: ['?'] not allowed"]
    assert cron_problems("*/15 * * *") == ["4 fields, not 5 or 6"]


def test_functiongraph_retries_what_reaper_answers_5xx() -> None:
    """Issue 27: FunctionGraph retries a failed asynchronous invocation only as its async config says.
    The shipped config asks for the most retries (3) within an hour, so a timer sweep or an EG event
    answered 503 is delivered again ("5xx means redeliver")."""
    config = deploy_json("async-config.json")
    assert config["max_async_retry_attempts"] == 3
    assert config["max_async_event_age_in_seconds"] == 3600
    assert "async-config.json" in (DEPLOY / "functiongraph" / "README.md").read_text()

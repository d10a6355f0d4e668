"""Cloud Tasks and QStash end to end, against loopback fakes that check the documented request shapes."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from cloudevents.http import CloudEvent

from function.errors import HandOffError
from function.schedulers.cloudtasks import CloudTasksScheduler, MetadataToken
from function.schedulers.qstash import QStashScheduler
from function.secret import Secret
from function.settings import Settings
from reaper.tools import send
from tests.conftest import Emulator, Function, FunctionFactory, Sink, expired, new_id, per_target, wait_until
from tests.fakes.cloudtasks import FakeCloudTasks
from tests.fakes.qstash import FakeQStash, sign

pytestmark = pytest.mark.integration

QUEUE = "projects/reaper-test/locations/europe-west1/queues/reaper"
SA = "reaper@reaper-test.iam.gserviceaccount.com"
QSTASH_TOKEN = "qstash-" + secrets.token_hex(16)
CURRENT_KEY = "sig_current_" + secrets.token_hex(16)
NEXT_KEY = "sig_next_" + secrets.token_hex(16)


@pytest.fixture
def cloudtasks() -> Iterator[FakeCloudTasks]:
    fake = FakeCloudTasks()
    yield fake
    fake.close()


@pytest.fixture
def qstash() -> Iterator[FakeQStash]:
    fake = FakeQStash(QSTASH_TOKEN, CURRENT_KEY)
    yield fake
    fake.close()


def follow_up(event_id: str = "ev-1") -> CloudEvent:
    return CloudEvent({"type": "instance-status-check", "source": "/reaper", "id": event_id}, {"n": 1})


def test_cloudtasks_end_to_end(
    cloudtasks: FakeCloudTasks, emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """With REAPER_SCHEDULER=cloudtasks, follow-ups ride Cloud Tasks and instances reach terminated."""
    fn = function_factory(
        REAPER_SCHEDULER="cloudtasks",
        REAPER_CLOUDTASKS_QUEUE=QUEUE,
        REAPER_CLOUDTASKS_SERVICE_ACCOUNT=SA,
        REAPER_CLOUDTASKS_API=cloudtasks.url,
        GCE_METADATA_HOST=cloudtasks.url.removeprefix("http://"),
        REAPER_CHECK_DELAY="1",
    )
    instances = [emulator.add(new_id()) for _ in range(3)]
    for instance in instances:
        assert fn.send(expired(instance)).status_code == 200
    for instance in instances:
        assert sink.result(instance)["type"] == "instance-terminated"
    assert cloudtasks.problems == []
    assert len(cloudtasks.tasks) >= 3
    assert cloudtasks.token_requests == 1  # cached across every task
    task = next(iter(cloudtasks.tasks.values()))
    assert task["httpRequest"]["oidcToken"] == {"serviceAccountEmail": SA, "audience": fn.url}
    assert task["httpRequest"]["headers"] == {"Content-Type": "application/cloudevents+json"}


def test_cloudtasks_duplicate_is_already_scheduled(cloudtasks: FakeCloudTasks) -> None:
    """A second task with the same dedup key gets 409 ALREADY_EXISTS, which counts as scheduled."""
    scheduler = CloudTasksScheduler(
        queue=QUEUE,
        target_url="http://127.0.0.1:9/",
        service_account=SA,
        api_base=cloudtasks.url,
        metadata_host=cloudtasks.url.removeprefix("http://"),
    )
    scheduler.schedule(follow_up(), 60, "key-1")
    scheduler.schedule(follow_up(), 60, "key-1")
    assert cloudtasks.answers == [200, 409]
    assert cloudtasks.problems == []
    with pytest.raises(HandOffError, match="30-day"):
        scheduler.schedule(follow_up(), 31 * 24 * 3600, "key-2")
    scheduler.close()


def test_cloudtasks_failures_are_hand_off_errors(cloudtasks: FakeCloudTasks) -> None:
    """No metadata token, a refused task or an unreachable API all raise HandOffError (handler 5xx)."""
    no_metadata = CloudTasksScheduler(
        queue=QUEUE, target_url="http://127.0.0.1:9/", service_account=SA, api_base=cloudtasks.url,
        metadata_host="127.0.0.1:9",
    )  # fmt: skip
    with pytest.raises(HandOffError, match="metadata"):
        no_metadata.schedule(follow_up(), 5, "k")
    wrong_queue = CloudTasksScheduler(
        queue="projects/p/locations/l/queues/q", target_url="not a url", service_account=SA,
        api_base=cloudtasks.url, metadata_host=cloudtasks.url.removeprefix("http://"),
    )  # fmt: skip
    with pytest.raises(HandOffError, match="400"):
        wrong_queue.schedule(follow_up(), 5, "k")
    unreachable = CloudTasksScheduler(
        queue=QUEUE, target_url="http://127.0.0.1:9/", service_account=SA, api_base="http://127.0.0.1:9",
        metadata_host=cloudtasks.url.removeprefix("http://"),
    )  # fmt: skip
    with pytest.raises(HandOffError, match="unreachable"):
        unreachable.schedule(follow_up(), 5, "k")


def test_metadata_token_is_cached_until_near_expiry(cloudtasks: FakeCloudTasks) -> None:
    """The access token is fetched once and again only within a minute of its expiry."""
    now = [1000.0]
    with httpx.Client() as http:
        token = MetadataToken(http, cloudtasks.url.removeprefix("http://"), clock=lambda: now[0])
        first = token.get()
        now[0] += 3000
        assert token.get() == first
        now[0] += 560  # 3599 s lifetime: now inside the refresh margin
        assert token.get() != first
    assert cloudtasks.token_requests == 2


def test_qstash_end_to_end(
    qstash: FakeQStash, emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """With REAPER_SCHEDULER=qstash, signed deliveries are verified and instances reach terminated."""
    fn = function_factory(
        REAPER_SCHEDULER="qstash",
        QSTASH_URL=qstash.url,
        QSTASH_TOKEN=QSTASH_TOKEN,
        QSTASH_CURRENT_SIGNING_KEY=CURRENT_KEY,
        QSTASH_NEXT_SIGNING_KEY=NEXT_KEY,
        REAPER_CHECK_DELAY="1",
    )
    instance = emulator.add(new_id())
    # The first event comes from the lease system through QStash too, so it is signed.
    published = QStashScheduler(base_url=qstash.url, token=Secret(QSTASH_TOKEN), target_url=fn.url)
    published.schedule(expired(instance), 0, "first-" + instance)
    assert sink.result(instance)["type"] == "instance-terminated"
    assert qstash.problems == []
    assert all(p["destination"] == fn.url for p in qstash.published)
    assert all(status == 200 for _, _, status in qstash.delivery.delivered)
    published.schedule(expired(instance), 0, "first-" + instance)
    assert len([p for p in qstash.published if p["dedup"] == "first-" + instance]) == 1
    settings_log = fn.log()
    for secret in (QSTASH_TOKEN, CURRENT_KEY, NEXT_KEY):
        assert secret not in settings_log


def test_qstash_poison_is_not_retried(
    qstash: FakeQStash, emulator: Emulator, function_factory: FunctionFactory
) -> None:
    """A signed delivery the function refuses (422) is answered 489 + Upstash-NonRetryable-Error, so
    QStash stops retrying it (dead-letter queue) instead of redelivering it for days."""
    fn = function_factory(
        REAPER_INBOUND_AUTH="qstash", QSTASH_CURRENT_SIGNING_KEY=CURRENT_KEY, QSTASH_NEXT_SIGNING_KEY=NEXT_KEY
    )
    instance = emulator.add(new_id())
    poison = CloudEvent({"type": "instance-expired", "source": "/lease", "id": new_id()}, {"note": instance})
    lease_system = QStashScheduler(base_url=qstash.url, token=Secret(QSTASH_TOKEN), target_url=fn.url)
    lease_system.schedule(poison, 0, "poison-" + instance)
    wait_until(lambda: qstash.delivery.delivered, 10, "the delivery")
    time.sleep(2.5)  # the fake retries a retryable answer after 1 s: give it two chances
    assert [status for _, _, status in qstash.delivery.delivered] == [489]
    assert emulator.touching(instance) == []


@pytest.mark.parametrize(
    ("case", "make_signature"),
    [
        ("missing signature", lambda url, body: None),
        ("tampered body", lambda url, body: sign(CURRENT_KEY, url, body + b" ")),
        ("wrong sub", lambda url, body: sign(CURRENT_KEY, "https://elsewhere.example/", body)),
        ("expired token", lambda url, body: sign(CURRENT_KEY, url, body, now=time.time() - 3600)),
        ("unknown key", lambda url, body: sign("not-our-key-" + "x" * 32, url, body)),
        ("wrong issuer", lambda url, body: sign(CURRENT_KEY, url, body, iss="Mallory")),
    ],
)
@pytest.mark.parametrize("target", ["handle", "handle_http"])
def test_qstash_bad_signatures_are_401_without_delete(
    case: str, make_signature: object, target: str, emulator: Emulator, qstash_fn: Callable[[str], Function]
) -> None:
    """Tampered, misaddressed, expired or missing signatures are refused (401) and cause no DELETE; a
    request that came as a QStash delivery is told the refusal is final (489 + Upstash-NonRetryable-Error)."""
    fn = qstash_fn(target)
    instance = emulator.add(new_id())
    body, headers = structured_expired(instance)
    signature = make_signature(fn.url, body)  # type: ignore[operator]
    if signature:
        headers["Upstash-Signature"] = signature
    response = httpx.post(fn.url, content=body, headers=headers)
    assert response.status_code == (489 if signature else 401), case
    assert response.json()["status"] == 401
    assert response.headers.get("Upstash-NonRetryable-Error") == ("true" if signature else None)
    assert "Upstash-Signature" in response.json()["error"] or "signature" in response.json()["error"].lower()
    assert emulator.calls(instance) == []


def test_qstash_next_key_is_accepted(
    emulator: Emulator, qstash_fn: Callable[[str], Function], sink: Sink
) -> None:
    """After a key rotation, a delivery signed with the next key is accepted."""
    fn = qstash_fn("handle")
    instance = emulator.add(new_id())
    body, headers = structured_expired(instance)
    headers["Upstash-Signature"] = sign(NEXT_KEY, fn.url, body)
    assert httpx.post(fn.url, content=body, headers=headers).status_code == 200
    assert [c["call"] for c in emulator.touching(instance)][:2] == ["list", "delete"]


def test_qstash_signature_cannot_be_replayed(
    emulator: Emulator, qstash_fn: Callable[[str], Function]
) -> None:
    """A captured Upstash-Signature (same jti; made by `reaper send --auth qstash`) is accepted once only."""
    fn = qstash_fn("handle_http")
    instance = emulator.add(new_id())
    body, headers = structured_expired(instance)
    headers = send.sign(headers, body, "qstash", secret=CURRENT_KEY, url=fn.url)
    assert httpx.post(fn.url, content=body, headers=headers).status_code == 200
    replay = httpx.post(fn.url, content=body, headers=headers)
    assert (replay.status_code, replay.json()["status"]) == (489, 401)
    assert "replay" in replay.json()["error"]
    assert [c["call"] for c in emulator.touching(instance)] == ["list", "delete"]


def test_qstash_publish_failures() -> None:
    """A refused or unreachable QStash raises HandOffError."""
    with pytest.raises(HandOffError, match="unreachable"):
        QStashScheduler(
            base_url="http://127.0.0.1:9", token=Secret("t-123456"), target_url="http://x/"
        ).schedule(follow_up(), 1, "k")


def test_transport_settings_are_validated() -> None:
    """Each transport's required settings are checked at start."""
    base = {
        "CLOUDDC_ENDPOINT": "http://127.0.0.1:1",
        "CLOUDDC_AUTH_TOKEN": "t-123456",
        "CLOUDDC_PROJECT_ID": "p",
        "REAPER_EVENT_KEY": "k" * 32,
        "REAPER_INBOUND_AUTH": "platform",
    }
    from function.errors import SettingsError

    with pytest.raises(SettingsError, match="REAPER_CLOUDTASKS_QUEUE"):
        Settings.from_env({**base, "REAPER_SCHEDULER": "cloudtasks", "REAPER_CLOUDTASKS_QUEUE": "q"})
    with pytest.raises(SettingsError, match="SERVICE_ACCOUNT"):
        Settings.from_env({**base, "REAPER_SCHEDULER": "cloudtasks", "REAPER_CLOUDTASKS_QUEUE": QUEUE})
    env = {"REAPER_CLOUDTASKS_SERVICE_ACCOUNT": SA, "REAPER_DEADLINE": str(40 * 86400)}
    with pytest.raises(SettingsError, match="30-day"):
        Settings.from_env({**base, "REAPER_SCHEDULER": "cloudtasks", "REAPER_CLOUDTASKS_QUEUE": QUEUE, **env})
    with pytest.raises(SettingsError, match="QSTASH_TOKEN"):
        Settings.from_env({**base, "REAPER_SCHEDULER": "qstash"})
    with pytest.raises(SettingsError, match="amqp"):
        Settings.from_env({**base, "REAPER_SCHEDULER": "rabbitmq", "REAPER_RABBITMQ_URL": "http://x"})
    view = Settings.from_env(
        {**base, "REAPER_RABBITMQ_URL": "amqp://user:pw-secret@host:5672/"}
    ).public_view()
    assert view["rabbitmq_url"] == "amqp://***@host:5672/"


@pytest.fixture(scope="module")
def qstash_fn(function_factory: FunctionFactory) -> Callable[[str], Function]:
    """A function per target that takes external events only with a valid Upstash-Signature."""
    return per_target(
        function_factory,
        REAPER_INBOUND_AUTH="qstash",
        QSTASH_CURRENT_SIGNING_KEY=CURRENT_KEY,
        QSTASH_NEXT_SIGNING_KEY=NEXT_KEY,
    )


def structured_expired(instance: str) -> tuple[bytes, dict[str, str]]:
    from cloudevents.conversion import to_structured

    headers, body = to_structured(expired(instance))
    return body, dict(headers)

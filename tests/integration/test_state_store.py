"""The state store's two adapters behave alike; Redis is the real ``redis-server`` on 127.0.0.1:6379."""

from __future__ import annotations

import time
import uuid

import pytest

from function.secret import Secret
from function.settings import Settings
from function.state import MemoryStore, StateStore, StoreUnavailableError, open_store
from function.state.redis import RedisStore
from reaper.devtools.procs import free_port
from tests.conftest import REDIS_URL
from tests.integration.test_fleet import at_once
from tests.unit.test_settings import BASE


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_up: None) -> StateStore:
    return MemoryStore() if request.param == "memory" else open_store(Secret(REDIS_URL), timeout=1.0)


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_a_claim_is_won_once_until_it_expires_or_is_released(store: StateStore) -> None:
    """First claim wins, a second loses; after release (or the TTL) it can be won again."""
    k = key()
    assert store.claim(k, 5.0)
    assert not store.claim(k, 5.0)
    store.release(k)
    assert store.claim(k, 0.2)
    time.sleep(0.4)
    assert store.claim(k, 5.0)


def test_claim_many_answers_per_key_in_order(store: StateStore) -> None:
    """Keys already held lose; the rest are won, in the keys' order."""
    held, free = key(), key()
    assert store.claim(held, 5.0)
    assert store.claim_many([free, held, free], 5.0) == [True, False, False]


def test_an_owner_wins_its_own_claim_again_and_renews_it(store: StateStore) -> None:
    """A chain's retry re-claims what it holds (renewed); another owner, or none, is refused."""
    k = key()
    assert store.claim(k, 0.5, owner="aaaa1111")
    assert store.claim(k, 5.0, owner="aaaa1111")  # renewed: outlives the first TTL
    assert not store.claim(k, 5.0, owner="bbbb2222")
    assert not store.claim(k, 5.0)
    time.sleep(0.7)
    assert not store.claim(k, 5.0, owner="bbbb2222")
    assert store.claim_many([k, key()], 5.0, owner="aaaa1111") == [True, True]


def test_counters_count_expire_and_read_a_value_in_the_same_trip(store: StateStore) -> None:
    """``count`` adds one (from 1 again once expired) and reads another key alongside; values expire."""
    counter, value = key(), key()
    assert store.read(value) is None
    assert store.count(counter, 0.3, also_read=value) == (1, None)
    store.write(value, "10.0 5.0", 0.3)
    assert store.count(counter, 0.3, also_read=value) == (2, "10.0 5.0")
    assert store.read(value) == "10.0 5.0"
    time.sleep(0.5)
    assert store.count(counter, 0.3) == (1, None)
    assert store.read(value) is None


def test_of_many_racing_claimants_exactly_one_wins(store: StateStore) -> None:
    """Sixteen threads claim one key at once: one True."""
    k, won = key(), []
    at_once([lambda: won.append(store.claim(k, 5.0))] * 16)
    assert sorted(won) == [False] * 15 + [True]


def test_a_store_that_does_not_answer_is_unavailable_within_its_timeout() -> None:
    """Nothing listening: every call raises ``StoreUnavailableError``, fast, and the password stays out."""
    gone = RedisStore(Secret(f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"), timeout=0.5)
    began = time.monotonic()
    calls = (
        lambda: gone.claim(key(), 1.0),
        lambda: gone.release(key()),
        gone.ping,
        lambda: gone.count(key(), 1.0),
        lambda: gone.read(key()),
        lambda: gone.write(key(), "v", 1.0),
    )
    for call in calls:
        with pytest.raises(StoreUnavailableError) as raised:
            call()
        assert "hunter2" not in str(raised.value)
    assert time.monotonic() - began < 10


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://user:pw@dcs.example:6380/1", True),
        ("http://127.0.0.1:6379", False),
        ("redis://", False),
        ("redis://host:99999", False),
    ],
)
def test_the_state_url_is_checked_at_start(url: str, ok: bool) -> None:
    """REAPER_STATE_URL must be redis:// or rediss:// with a host; a bad one stops the start."""
    env = {**BASE, "REAPER_STATE_URL": url}
    if ok:
        settings = Settings.from_env(env)
        assert "pw" not in str(settings.public_view())
    else:
        with pytest.raises(Exception, match="REAPER_STATE_URL"):
            Settings.from_env(env)

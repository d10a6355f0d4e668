"""Redis (Huawei DCS, Memorystore, ElastiCache, a local ``redis-server``) through the ``redis`` client.

A claim is ``SET key 1 NX PX ttl`` (with an owner, one Lua script that stores the owner and also renews
the owner's own claim): atomic on the server, so of N instances racing for a key exactly one wins, and
it expires by itself (a crashed holder blocks nothing for long). Every call has a socket time-out; any
failure to get an answer is ``StoreUnavailableError``: the caller fails closed. The client reconnects on
the next call, so a store that comes back is used again without a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import redis
import redis.exceptions

from function.envvars import mask_password
from function.secret import Secret
from function.state.base import StoreUnavailableError

PREFIX: Final = "reaper:"
# Win a free key, or renew one this owner holds; a key someone else holds is refused.
_CLAIM_AS_OWNER: Final = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class RedisStore:
    """Claims as expiring keys in one Redis database."""

    def __init__(self, url: Secret, *, timeout: float) -> None:
        self._client = redis.Redis.from_url(
            url.reveal(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry_on_timeout=False,
        )
        self._where = mask_password(url.reveal())
        self._claim_as_owner = self._client.register_script(_CLAIM_AS_OWNER)

    def claim(self, key: str, ttl: float, owner: str | None = None) -> bool:
        """True for the one caller that set it (or, with ``owner``, that holds it already)."""
        return self.claim_many((key,), ttl, owner)[0]

    def claim_many(self, keys: Sequence[str], ttl: float, owner: str | None = None) -> list[bool]:
        """One pipeline of claims, one answer per key."""
        millis = max(int(ttl * 1000), 1)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    if owner is None:
                        pipe.set(PREFIX + key, b"1", nx=True, px=millis)
                    else:
                        self._claim_as_owner(keys=[PREFIX + key], args=[owner, millis], client=pipe)
                answers = pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None
        return [answer is True or answer == 1 for answer in answers]

    def count(self, key: str, ttl: float, *, also_read: str | None = None) -> tuple[int, str | None]:
        """``SET 0 NX PX`` (a new counter expires), ``INCR`` (keeps it) and ``GET also_read``, one pipeline.

        Not ``PEXPIRE … NX``: Redis 6, which managed services still run, does not have it.
        """
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(PREFIX + key, b"0", nx=True, px=max(int(ttl * 1000), 1))
                pipe.incr(PREFIX + key)
                if also_read is not None:
                    pipe.get(PREFIX + also_read)
                answers = pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None
        held = answers[2] if also_read is not None else None
        return int(answers[1]), held.decode() if isinstance(held, bytes) else None

    def read(self, key: str) -> str | None:
        """``GET``."""
        try:
            held = self._client.get(PREFIX + key)
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None
        return held.decode() if isinstance(held, bytes) else None

    def write(self, key: str, value: str, ttl: float) -> None:
        """``SET PX``."""
        try:
            self._client.set(PREFIX + key, value.encode(), px=max(int(ttl * 1000), 1))
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None

    def release(self, key: str) -> None:
        """``DEL``."""
        try:
            self._client.delete(PREFIX + key)
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None

    def ping(self) -> None:
        """``PING``."""
        try:
            self._client.ping()
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(f"state store {self._where} unavailable: {type(exc).__name__}")

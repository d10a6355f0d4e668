"""The emulator's own check of AK/SK signatures, and the temporary keys it hands out as metadata.

Written apart from ``function.credentials.aksk`` on purpose: it rebuilds the canonical request from
what the server received (werkzeug's view of path, query, headers and body) following Huawei's
signing description, so a mistake in reaper's signer shows as a 401 here instead of agreeing with itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

_AUTHORIZATION: Final = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<names>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
_SKEW: Final = 15 * 60.0


@dataclass(frozen=True)
class IssuedKey:
    """A key pair the emulator accepts; temporary ones carry a security token and an expiry."""

    sk: str
    security_token: str | None = None
    expires: float | None = None


class KeyRing:
    """Static and temporary AK/SK pairs, thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: dict[str, IssuedKey] = {}
        self._lock = threading.Lock()

    def add_static(self, ak: str, sk: str) -> None:
        """Accept this permanent pair."""
        with self._lock:
            self._keys[ak] = IssuedKey(sk)

    def issue_temporary(self, ttl: float) -> tuple[str, str, str, float]:
        """A new temporary (ak, sk, security token, expiry), as the metadata service gives."""
        ak = "TMP" + secrets.token_hex(8).upper()
        sk = secrets.token_urlsafe(30)
        token = "gQ" + secrets.token_urlsafe(600)
        expires = self._clock() + ttl
        with self._lock:
            self._keys[ak] = IssuedKey(sk, token, expires)
        return ak, sk, token, expires

    def check(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> str | None:
        """None when the request's signature is valid now; else why not (for the 401 body)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        found = _AUTHORIZATION.match(lowered.get("authorization", "").strip())
        if not found:
            return "malformed Authorization"
        with self._lock:
            key = self._keys.get(found["ak"])
        if key is None:
            return "unknown access key"
        if key.expires is not None and self._clock() >= key.expires:
            return "temporary access key expired"
        if key.security_token is not None and lowered.get("x-security-token") != key.security_token:
            return "security token missing or wrong"
        names = found["names"].split(";")
        if "host" not in names or "x-sdk-date" not in names or any(n not in lowered for n in names):
            return "signed headers incomplete"
        try:
            stamp = datetime.strptime(lowered["x-sdk-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return "bad X-Sdk-Date"
        if abs(self._clock() - stamp) > _SKEW:
            return "X-Sdk-Date outside 15 minutes"
        segments = [quote(part, safe="~") for part in path.split("/")]
        joined = "/".join(segments)
        uri = joined if joined.endswith("/") else joined + "/"
        pairs = sorted((quote(k, safe="~"), quote(v, safe="~")) for k, v in query)
        lines = [
            method.upper(),
            uri,
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{n}:{lowered[n].strip()}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        to_sign = "\n".join(("SDK-HMAC-SHA256", lowered["x-sdk-date"], digest)).encode()
        expected = hmac.new(key.sk.encode(), to_sign, hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(expected, found["sig"]) else "signature mismatch"

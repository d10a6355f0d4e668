"""Temporary AK/SK from the ECS/BMS metadata service (the agency of the server reaper runs on).

``GET {metadata}/openstack/latest/securitykey`` answers ``{"credential": {"access", "secret",
"securitytoken", "expires_at"}}``; every call is signed with the current key and its security token,
and a new key is fetched ahead of ``expires_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from function import outbound
from function.credentials.aksk import sign_request
from function.credentials.iam import parse_expiry
from function.credentials.refreshing import Refreshing
from function.errors import CredentialsError
from function.secret import Secret

if TYPE_CHECKING:
    from function.outbound.endpoint import Call

SECURITY_KEY_PATH = "/openstack/latest/securitykey"


@dataclass(frozen=True)
class TemporaryKey:
    """One temporary key triple; all three are used together."""

    ak: Secret
    sk: Secret
    security_token: Secret

    def __repr__(self) -> str:
        return "TemporaryKey(***)"


class MetadataKeys:
    """AK/SK signing with the metadata service's temporary key, refreshed before it expires."""

    name = "metadata"

    def __init__(
        self,
        metadata_url: str,
        project_id: str | None,
        *,
        timeout: float,
        deadline: float = outbound.DEADLINE,
    ) -> None:
        self._url = metadata_url.rstrip("/") + SECURITY_KEY_PATH
        self._project_id = project_id
        self._http = outbound.client(timeout=timeout, deadline=deadline)
        self.key: Refreshing[TemporaryKey] = Refreshing(self._fetch, wait=timeout)

    def apply(self, request: Call) -> None:
        """Sign ``request`` with the current temporary key."""
        key = self.key.get()
        sign_request(request, key.ak, key.sk, security_token=key.security_token, project_id=self._project_id)

    def reload(self) -> None:
        """After a 401: fetch a new key on the next call."""
        self.key.invalidate(self.key.get())

    def _fetch(self) -> tuple[TemporaryKey, float]:
        try:
            response = self._http.get(self._url)
            credential = response.json()["credential"] if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise CredentialsError(f"metadata security key unavailable ({type(exc).__name__})") from None
        if not isinstance(credential, dict):
            raise CredentialsError(f"metadata service answered {response.status_code}")
        parts = [credential.get(k) for k in ("access", "secret", "securitytoken")]
        if not all(isinstance(p, str) and p for p in parts):
            raise CredentialsError("metadata security key is incomplete")
        ak, sk, token = (Secret(str(p), scope="rotating") for p in parts)
        return TemporaryKey(ak, sk, token), parse_expiry(credential.get("expires_at"))

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __repr__(self) -> str:
        return "MetadataKeys(***)"

"""An IAM token reaper fetches itself (password, project-scoped) and refreshes before it expires.

``POST {CLOUDDC_IAM_ENDPOINT}/v3/auth/tokens`` answers 201 with the token in ``X-Subject-Token`` and
``token.expires_at`` in the body (tokens live 24 hours; design §2).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from function import outbound
from function.credentials.refreshing import Refreshing
from function.errors import CredentialsError
from function.secret import Secret

if TYPE_CHECKING:
    from function.outbound.endpoint import Call


def parse_expiry(text: object) -> float:
    """Epoch seconds of an IAM/metadata ``expires_at`` (ISO 8601 with ``Z`` and microseconds)."""
    if not isinstance(text, str):
        raise CredentialsError("the credential answer has no expires_at")
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise CredentialsError("the credential answer's expires_at is not a date") from None
    if when.tzinfo is None:
        raise CredentialsError("the credential answer's expires_at has no time zone")
    return when.timestamp()


class IamTokenSource:
    """``X-Auth-Token`` from a password-scoped IAM token, refreshed ahead of its expiry."""

    name = "iam-password"

    def __init__(
        self,
        endpoint: str,
        domain: str,
        user: str,
        password: Secret,
        project_id: str,
        *,
        timeout: float,
        deadline: float = outbound.DEADLINE,
    ) -> None:
        self._url = endpoint.rstrip("/") + "/v3/auth/tokens"
        self._domain, self._user, self._project_id = domain, user, project_id
        self._password = password
        # The deadline bounds the one refresh the others wait behind (issue 24: a dripping IAM endpoint).
        self._http = outbound.client(timeout=timeout, deadline=deadline)
        self.token: Refreshing[Secret] = Refreshing(self._fetch, wait=timeout)

    def apply(self, request: Call) -> None:
        """Authenticate ``request`` with the current token."""
        request.headers["X-Auth-Token"] = self.token.get().reveal()

    def reload(self) -> None:
        """After a 401: fetch a new token on the next call (once; others may already have)."""
        self.token.invalidate(self.token.get())

    def _request_body(self) -> dict[str, Any]:
        """The password request body, built per fetch so the password is held only by its Secret."""
        user = {"name": self._user, "password": self._password.reveal(), "domain": {"name": self._domain}}
        return {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"id": self._project_id}},
            }
        }

    def _fetch(self) -> tuple[Secret, float]:
        body = self._request_body()
        try:
            response = self._http.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise CredentialsError(f"IAM unreachable ({type(exc).__name__})") from None
        token = response.headers.get("X-Subject-Token")
        if response.status_code != 201 or not token:
            raise CredentialsError(f"IAM refused the token request ({response.status_code})")
        try:
            expires = parse_expiry(response.json()["token"]["expires_at"])
        except (ValueError, KeyError, TypeError):
            raise CredentialsError("IAM answered without token.expires_at") from None
        return Secret(token, scope="rotating"), expires

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __repr__(self) -> str:
        return "IamTokenSource(***)"

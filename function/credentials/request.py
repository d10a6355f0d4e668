"""Credentials the platform hands over with each request (FunctionGraph "Include keys").

FunctionGraph passes the agency's temporary key in one of two header families, used together: the
custom-runtime docs and public event samples name them ``X-CFF-Access-Key``, ``X-CFF-Secret-Key`` and
``X-CFF-Security-Token``; other runtimes send ``X-CFF-Security-Access-Key``,
``X-CFF-Security-Secret-Key`` and ``X-CFF-Security-Token``. Both are read. A token comes as
``X-CFF-Auth-Token``. With ``REAPER_TOKEN_FROM_REQUEST=true`` the request's own credentials sign
that request's CloudDC calls (the temporary key first, the token as the fallback); they are
redacted in that request's log lines only and never kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, Protocol

from function import redaction
from function.credentials.aksk import AkSkCredentials
from function.errors import CredentialsError
from function.secret import Secret

if TYPE_CHECKING:
    from function.outbound.endpoint import Call

HEADERS: Final = ("X-CFF-Security-Access-Key", "X-CFF-Security-Secret-Key", "X-CFF-Security-Token")
# The custom-runtime family (FunctionGraph's custom image docs and their event samples).
CUSTOM_RUNTIME_HEADERS: Final = ("X-CFF-Access-Key", "X-CFF-Secret-Key", "X-CFF-Security-Token")
TOKEN_HEADER: Final = "X-CFF-Auth-Token"  # noqa: S105 - a header's name


class Credentials(Protocol):
    """What the CloudDC client needs: authenticate a request, and try fresh credentials after a 401."""

    name: str

    def apply(self, request: Call) -> None:
        """Add the headers that authenticate ``request``."""

    def reload(self) -> object:
        """After a 401: use fresh credentials for the next call, if this source can get any."""


class _RequestToken:
    name = "request-token"

    def __init__(self, token: Secret) -> None:
        self._token = token

    def apply(self, request: Call) -> None:
        request.headers["X-Auth-Token"] = self._token.reveal()

    def reload(self) -> None:
        """The platform's token for this request is what it is."""


_IN_EFFECT: ContextVar[Credentials | None] = ContextVar("reaper_request_credentials", default=None)


@contextmanager
def request_credentials(headers: Mapping[str, str], project_id: str | None) -> Iterator[None]:
    """Use the credentials these request headers carry for the calls made inside, if they carry any."""
    lowered = {k.lower(): v for k, v in headers.items()}
    families = ([lowered.get(h.lower()) for h in names] for names in (HEADERS, CUSTOM_RUNTIME_HEADERS))
    key = next((family for family in families if all(family)), [None])
    token = lowered.get(TOKEN_HEADER.lower())
    chosen: Credentials | None = None
    values: list[str] = []
    if all(key):
        ak, sk, security = (Secret(str(v), scope="request") for v in key)
        chosen = AkSkCredentials(ak, sk, security, project_id)
        values = [str(v) for v in key]
    elif token:
        chosen, values = _RequestToken(Secret(token, scope="request")), [token]
    marker = _IN_EFFECT.set(chosen)
    try:
        with ExitStack() as stack:
            for value in values:
                stack.enter_context(redaction.request_secret(value))
            yield
    finally:
        _IN_EFFECT.reset(marker)


class RequestScoped:
    """The request's own credentials when it carries some, else the configured source (if any)."""

    name = "request"

    def __init__(self, fallback: Credentials | None) -> None:
        self._fallback = fallback

    def apply(self, request: Call) -> None:
        """Authenticate with the request's credentials, or the fallback."""
        self._current().apply(request)

    def reload(self) -> None:
        """Reload the fallback when it is the one in use."""
        self._current().reload()

    def _current(self) -> Credentials:
        chosen = _IN_EFFECT.get() or self._fallback
        if chosen is None:
            raise CredentialsError(
                "no credentials: the request carried no X-CFF-(Security-)Access-Key, -Secret-Key and "
                "X-CFF-Security-Token, nor an X-CFF-Auth-Token "
                "(turn on FunctionGraph's 'Include keys')"
            )
        return chosen

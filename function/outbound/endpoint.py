"""One origin reaper calls on every event: a request it builds, an answer it reads, nothing in between.

Why not ``httpx.Request``/``httpx.Response`` on this path: building them (URL parsing, header
normalisation, the response's decoder chain) was a quarter of reaper's own CPU per event, more than the
HTTP exchange itself (py-spy, docs/performance-notes.md). ``Call`` and ``Answer`` carry only what the
CloudDC client, the credentials and the delay-service client use. httpx stays the error vocabulary
(``httpx.TransportError`` and its subclasses) and the client everywhere else; an origin that the
environment routes through a proxy goes through httpx's own transport, as an ``httpx.Client`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple
from urllib.parse import urlencode

import httpx

from function import jsontext
from function.outbound import http11
from function.outbound.keepalive import (
    DEADLINE,
    KeepAliveTransport,
    environment_proxy,
    keep_alive,
    origin_of,
    tls_context,
)

_FRAMED_ALWAYS: Final = frozenset({"POST", "PUT", "PATCH"})  # httpx sends Content-Length: 0 for these
USER_AGENT: Final = "reaper/0.1"


@dataclass(slots=True)
class Call:
    """One request to an endpoint: ``path`` percent-encoded, ``query`` decoded, ``headers`` to add to.

    Its repr leaves out headers and body: they carry the token or the AK/SK signature once authenticated.
    """

    method: str
    host: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    content: bytes = field(default=b"", repr=False)

    @property
    def target(self) -> str:
        """The request target as sent: the path and its encoded query."""
        return f"{self.path}?{urlencode(self.query)}" if self.query else self.path


class Answer(NamedTuple):
    """One whole response: status, headers (lower-case names) and body (immutable, built in C)."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        """The body parsed strictly as JSON (``jsontext.UnreadableError`` when it is not one clear value)."""
        return jsontext.loads(self.content)


class Endpoint:
    """Calls to one origin: a base URL, default headers and timeouts, on reaper's keep-alive transport."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout,
        headers: dict[str, str] | None = None,
        connect_retries: int = 0,
        deadline: float = DEADLINE,
        max_body: int = http11.MAX_BODY,
    ) -> None:
        url = httpx.URL(base_url.rstrip("/"))
        self._origin = origin_of(url)
        self._host = url.netloc.decode("ascii")
        self._prefix = url.raw_path.decode("ascii").rstrip("/")
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._timeouts = timeout.as_dict()
        self._max_body = max_body
        proxy = environment_proxy(str(url))
        self._proxied: httpx.BaseTransport | None = None
        self._transport: KeepAliveTransport | None = None
        if proxy is not None:
            self._proxied = httpx.HTTPTransport(proxy=proxy, verify=tls_context(), retries=connect_retries)
        else:
            self._transport = keep_alive(
                connect_retries=connect_retries, deadline=deadline, max_body=max_body
            )

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Call:
        """A request for ``path`` (percent-encoded) under the base URL, with a JSON body if given."""
        call = Call(method, self._host, self._prefix + path, headers={**self._headers, **(headers or {})})
        if query:
            call.query = tuple((name, str(value)) for name, value in query.items())
        if json is not None:
            call.content = jsontext.dumps(json)
            call.headers["Content-Type"] = "application/json"
        return call

    def send(self, call: Call) -> Answer:
        """Send ``call`` and return the whole answer; transport failures raise ``httpx.TransportError``."""
        if self._transport is None:
            return self._send_proxied(call)
        try:
            target = call.target.encode("ascii")
            head = [(b"Host", call.host.encode("ascii"))] + [
                (name.encode("ascii"), value.encode("latin-1")) for name, value in call.headers.items()
            ]
        except UnicodeEncodeError:
            # Never echo the text: a header value may be a credential.
            raise httpx.LocalProtocolError("the request target or a header is not encodable") from None
        if call.content or call.method in _FRAMED_ALWAYS:
            head.append((b"Content-Length", str(len(call.content)).encode("ascii")))
        wire = http11.Request(call.method, target, head, call.content)
        response = self._transport.exchange(self._origin, wire, self._timeouts)
        fields = {name.decode("latin-1"): value.decode("latin-1") for name, value in response.fields.items()}
        return Answer(response.status, fields, response.content)

    def _send_proxied(self, call: Call) -> Answer:
        assert self._proxied is not None
        request = httpx.Request(
            call.method,
            f"{self._origin[0]}://{call.host}{call.target}",
            headers=call.headers,
            content=call.content,
            extensions={"timeout": self._timeouts},
        )
        response = self._proxied.handle_request(request)
        # The raw bytes, as the direct path reads them (the caller decodes Content-Encoding), within the cap.
        parts, held = [], 0
        try:
            for part in response.iter_raw():
                held += len(part)
                if held > self._max_body:
                    raise httpx.RemoteProtocolError(f"response body over the cap of {self._max_body} bytes")
                parts.append(part)
        finally:
            response.close()
        return Answer(response.status_code, dict(response.headers.items()), b"".join(parts))

    def close(self) -> None:
        """Release the connections."""
        if self._transport is not None:
            self._transport.close()
        if self._proxied is not None:
            self._proxied.close()

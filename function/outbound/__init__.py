"""Outbound HTTP clients: httpx on reaper's keep-alive transport, with one TLS context per process.

Building a TLS context (loading the CA bundle) costs ~30 ms; httpx builds one per client unless
given one, which tripled reaper's import time (measured in docs/benchmarks.md, cold start). It is
built on the first HTTPS connection, not at import: a cold start pays only for what it uses.
"""

from __future__ import annotations

import functools
import ssl
import urllib.request
from typing import Any

import httpx

from function.outbound.keepalive import KeepAliveTransport

__all__ = ["Endpoint", "KeepAliveTransport", "client", "environment_proxy", "keep_alive", "tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process-wide verifying TLS context (certifi's CA bundle, as httpx uses by default)."""
    return ssl.create_default_context(cafile=_ca_bundle())


def _ca_bundle() -> str:
    import certifi

    return str(certifi.where())


def keep_alive(*, connect_retries: int = 0) -> KeepAliveTransport:
    """reaper's transport: per-thread keep-alive connections, TLS verified with the shared context."""
    return KeepAliveTransport(ssl_context=tls_context, connect_retries=connect_retries)


def client(**options: Any) -> httpx.Client:
    """An ``httpx.Client`` on reaper's transport (an explicit ``transport`` wins)."""
    if options.get("transport") is None:
        options["transport"] = keep_alive()
    return httpx.Client(**options)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``*_PROXY`` / ``NO_PROXY``, as httpx reads them)."""
    target = httpx.URL(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(target.host):
        return None
    return proxy


class Endpoint:
    """One origin reaper calls on every event: httpx requests sent straight through the transport.

    ``httpx.Client.send`` adds auth flows, redirects, cookie jars and hooks that reaper's hot path never
    uses, at ~0.1 ms of CPU a call (a third of a call's cost here, measured in docs/benchmarks.md);
    requests and answers stay ``httpx.Request`` and ``httpx.Response``. An origin that the environment
    routes through a proxy (``HTTPS_PROXY``/``HTTP_PROXY``, minus ``NO_PROXY``) goes through httpx's own
    transport with that proxy, as an ``httpx.Client`` would.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        connect_retries: int = 0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"User-Agent": "reaper/0.1", **(headers or {})}
        self._extensions = {"timeout": timeout.as_dict()}
        proxy = None if transport is not None else environment_proxy(self.base_url)
        if proxy is not None:
            transport = httpx.HTTPTransport(proxy=proxy, verify=tls_context(), retries=connect_retries)
        self._transport = transport or keep_alive(connect_retries=connect_retries)

    def request(self, method: str, path: str, **options: Any) -> httpx.Request:
        """A request for ``path`` under the base URL (``params``, ``json``, ``content``, ``headers``)."""
        headers = {**self._headers, **options.pop("headers", {})}
        return httpx.Request(
            method, self.base_url + path, headers=headers, extensions=self._extensions, **options
        )

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the whole answer; transport failures raise ``httpx.TransportError``."""
        response = self._transport.handle_request(request)
        response.request = request
        response.read()
        return response

    def close(self) -> None:
        """Release the connections."""
        self._transport.close()

"""Outbound HTTP: reaper's keep-alive transport, the hot path's ``Endpoint``, httpx clients on both.

``keepalive`` speaks HTTP/1.1 (``http11``) on per-thread keep-alive connections, as an httpx transport
and directly; ``endpoint`` sends the calls made on every event (CloudDC, the delay service) without
httpx's request and response models; everything else is an ``httpx.Client`` on the same transport.
"""

from __future__ import annotations

from typing import Any

import httpx

from function.outbound.endpoint import Answer, Call, Endpoint, environment_proxy
from function.outbound.keepalive import KeepAliveTransport, keep_alive, tls_context

__all__ = [
    "Answer",
    "Call",
    "Endpoint",
    "KeepAliveTransport",
    "client",
    "environment_proxy",
    "keep_alive",
    "tls_context",
]


def client(**options: Any) -> httpx.Client:
    """An ``httpx.Client`` on reaper's transport (an explicit ``transport`` wins)."""
    if options.get("transport") is None:
        options["transport"] = keep_alive()
    return httpx.Client(**options)

"""Outbound HTTP: reaper's keep-alive transport, the hot path's ``Endpoint``, httpx clients on both.

``keepalive`` speaks HTTP/1.1 (``http11``) on per-thread keep-alive connections, as an httpx transport
and directly; ``endpoint`` sends the calls made on every event (CloudDC, the delay service) without
httpx's request and response models; everything else is an ``httpx.Client`` on the same transport.
"""

from __future__ import annotations

from typing import Any

import httpx

from function.outbound.endpoint import Answer, Call, Endpoint
from function.outbound.http11 import MAX_BODY
from function.outbound.keepalive import (
    DEADLINE,
    KeepAliveTransport,
    environment_proxy,
    keep_alive,
    tls_context,
)

__all__ = [
    "DEADLINE",
    "MAX_BODY",
    "Answer",
    "Call",
    "Endpoint",
    "KeepAliveTransport",
    "client",
    "environment_proxy",
    "keep_alive",
    "tls_context",
]


def client(*, deadline: float = DEADLINE, max_body: int = MAX_BODY, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` on reaper's transport (an explicit ``transport`` wins); never follows redirects.

    ``deadline`` bounds each call's connect and whole answer, ``max_body`` its body; proxies named by the
    environment are honoured by the transport itself.
    """
    if options.get("transport") is None:
        options["transport"] = keep_alive(deadline=deadline, max_body=max_body)
    return httpx.Client(**options)

"""Outbound HTTP clients: every ``httpx.Client`` in the process shares one TLS context.

Building a TLS context (loading the CA bundle) costs ~30 ms; httpx builds one per client unless
given one, which tripled reaper's import time (measured in docs/benchmarks.md, cold start).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process-wide verifying TLS context (certifi's CA bundle, as httpx uses by default)."""
    return ssl.create_default_context(cafile=_ca_bundle())


def _ca_bundle() -> str:
    import certifi

    return str(certifi.where())


def client(**options: Any) -> httpx.Client:
    """An ``httpx.Client`` with the shared TLS context (explicit ``verify`` wins)."""
    options.setdefault("verify", tls_context())
    return httpx.Client(**options)

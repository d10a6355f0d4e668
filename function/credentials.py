"""Where the IAM token comes from: the environment, or a mounted secret file re-read when it changes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from function import jsonlog
from function.errors import CredentialsError, SettingsError
from function.secret import Secret

_REQUEST_TOKEN: ContextVar[Secret | None] = ContextVar("reaper_request_token", default=None)


@contextmanager
def request_token(value: str | None) -> Iterator[None]:
    """Use ``value`` (a platform-provided token, e.g. X-CFF-Auth-Token) for calls made inside."""
    marker = _REQUEST_TOKEN.set(Secret(value, scope="request") if value else None)
    try:
        with jsonlog.request_secret(value):
            yield
    finally:
        _REQUEST_TOKEN.reset(marker)


class TokenSource:
    """Serves the current token: a per-request token when one is in effect, else env or file.

    A file source notices rotation by mtime and is re-read on demand (after a 401).
    """

    def __init__(
        self, token: Secret | None = None, token_file: Path | None = None, *, from_request: bool = False
    ) -> None:
        if token is None and token_file is None and not from_request:
            raise SettingsError("set CLOUDDC_AUTH_TOKEN or CLOUDDC_AUTH_TOKEN_FILE")
        self._fixed = token
        self._file = token_file
        self._lock = threading.Lock()
        self._cached: Secret | None = None
        self._mtime_ns = -1
        if token_file is not None:
            try:
                self.reload()
            except CredentialsError as exc:
                raise SettingsError(str(exc)) from None

    def current(self) -> Secret:
        """The token to send now."""
        override = _REQUEST_TOKEN.get()
        if override is not None:
            return override
        if self._file is None:
            if self._fixed is None:
                raise CredentialsError("no token: the request carried no X-CFF-Auth-Token")
            return self._fixed
        with self._lock:
            if self._cached is None or self._file_mtime() != self._mtime_ns:
                self._read_locked()
            assert self._cached is not None
            return self._cached

    def reload(self) -> Secret:
        """Re-read the token file (after a 401); a fixed or per-request token is returned as it is."""
        if self._file is None or _REQUEST_TOKEN.get() is not None:
            return self.current()
        with self._lock:
            self._read_locked()
            assert self._cached is not None
            return self._cached

    def _file_mtime(self) -> int:
        assert self._file is not None
        try:
            return os.stat(self._file).st_mtime_ns
        except OSError:
            return -1

    def _read_locked(self) -> None:
        assert self._file is not None
        try:
            text = self._file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            # No path in the message: it may reach an HTTP answer (503); the operator set the path.
            raise CredentialsError(f"CLOUDDC_AUTH_TOKEN_FILE cannot be read ({exc.strerror})") from None
        if not text:
            raise CredentialsError("CLOUDDC_AUTH_TOKEN_FILE is empty")
        self._mtime_ns = self._file_mtime()
        self._cached = Secret(text, scope="rotating")

    def __repr__(self) -> str:
        where = f"file={str(self._file)!r}" if self._file else "env"
        return f"TokenSource({where})"

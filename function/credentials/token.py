"""A fixed IAM token: from the environment, or a mounted file re-read when it changes or after a 401."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from function.errors import CredentialsError, SettingsError
from function.secret import Secret

if TYPE_CHECKING:
    from function.outbound.endpoint import Call


class TokenSource:
    """Serves the configured token (env or file) as ``X-Auth-Token``.

    A file source notices rotation by mtime and is re-read on demand (after a 401).
    """

    name = "token"

    def __init__(self, token: Secret | None = None, token_file: Path | None = None) -> None:
        if token is None and token_file is None:
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

    def apply(self, request: Call) -> None:
        """Authenticate ``request`` with the token."""
        request.headers["X-Auth-Token"] = self.current().reveal()

    def current(self) -> Secret:
        """The token to send now."""
        if self._file is None:
            assert self._fixed is not None
            return self._fixed
        with self._lock:
            if self._cached is None or self._file_mtime() != self._mtime_ns:
                self._read_locked()
            assert self._cached is not None
            return self._cached

    def reload(self) -> Secret:
        """Re-read the token file (after a 401); a token from the environment is returned as it is."""
        if self._file is None:
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

"""A misbehaving upstream on loopback, byte for byte: raw sockets, so it can say what no framework would.

Each request is handed to a ``script`` that returns the reply: bytes written as they are, or a list of
``(bytes, pause)`` pieces written one after the other (a server that drips). It keeps every request it
read; connections stay open across requests unless the reply says ``close``. Every drip is bounded: it
stops when its pieces run out or the client has gone.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    """One request as the hostile server read it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    connection: int  # which connection carried it (accept order)


@dataclass
class Reply:
    """What to write back: ``raw`` at once, else ``pieces`` with a pause after each; then maybe close."""

    raw: bytes = b""
    pieces: list[tuple[bytes, float]] = field(default_factory=list)
    close: bool = False
    close_after: float | None = None  # close this long after writing, without saying so


Script = Callable[[Seen], Reply]


def response(
    status: int = 200,
    body: bytes | str | object = b"",
    *,
    content_type: str = "application/json",
    headers: Iterable[tuple[str, str]] = (),
    length: bool = True,
) -> bytes:
    """An HTTP/1.1 response's bytes: a JSON body for anything that is not bytes or str."""
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    content = body.encode() if isinstance(body, str) else body
    lines = [f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}", f"Content-Type: {content_type}"]
    if length:
        lines.append(f"Content-Length: {len(content)}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


def listing(*records: dict[str, Any], next_marker: str | None = None) -> dict[str, Any]:
    """A ListInstances body with these records (the SDK's ListInstancesResponse shape)."""
    page_info: dict[str, Any] = {"current_count": len(records)}
    if next_marker:
        page_info["next_marker"] = next_marker
    return {"instances": list(records), "page_info": page_info, "count": len(records)}


def record(instance_id: str, state: str = "running", **metadata: str) -> dict[str, Any]:
    """One ListInstances record, expired an hour ago unless the metadata says otherwise."""
    return {
        "id": instance_id,
        "name": instance_id,
        "state": state,
        "metadata": {"reaper-expires-at": "2020-01-01T00:00:00Z", **metadata},
    }


def gzipped(document: object) -> bytes:
    """A JSON document gzip-encoded."""
    return gzip.compress(json.dumps(document).encode())


class HostileServer:
    """A loopback HTTP/1.1 server whose every answer a test writes by hand."""

    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self._tls = tls
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._stopped = threading.Event()
        self._connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def requests(self, method: str | None = None, instance: str | None = None) -> list[Seen]:
        """The requests read so far (``instance``: those naming it in their path or id query)."""
        with self.lock:
            seen = list(self.seen)
        return [
            s
            for s in seen
            if (method is None or s.method == method)
            and (instance is None or instance in s.path or instance in s.query.get("instance_id", ""))
        ]

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections += 1
            threading.Thread(target=self._serve, args=(conn, self._connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(30)
        if self._tls is not None:
            try:
                conn = self._tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()  # the client refused the certificate: nothing was asked
                return
        buffer = b""
        with contextlib.closing(conn):
            while not self._stopped.is_set():
                try:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = lines[0].split(" ", 2)
                    headers = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    size = int(headers.get("content-length", "0"))
                    while len(buffer) < size:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    body, buffer = buffer[:size], buffer[size:]
                    url = urlsplit(target)
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    seen = Seen(method, url.path, query, headers, body, number)
                    with self.lock:
                        self.seen.append(seen)
                    reply = self.script(seen)
                    if reply.raw:
                        conn.sendall(reply.raw)
                    for piece, pause in reply.pieces:
                        if self._stopped.is_set():
                            return
                        conn.sendall(piece)
                        time.sleep(pause)
                    if reply.close_after is not None:
                        time.sleep(reply.close_after)
                        return
                    if reply.close:
                        return
                except OSError:
                    return

"""Canned CloudDC and delay-service answers on raw asyncio keep-alive connections: the bench's cheapest upstream.

``python -m bench.stub_upstream PORT TEMPLATE_JSON [LATENCY_S]`` answers ListInstances with the template record (as the
emulator shows a running instance) under the asked id, DeleteInstance with 204 and the delay service's
``POST /v1/events`` with 202 — nothing is stored; CloudDC answers wait LATENCY_S first, as the emulator's
``latency`` setting does. It exists to measure the function's own ceiling: the
emulator and delay service cost more CPU per event than the function, on the same two cores.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit


def answer(method: str, target: str, template: dict[str, Any]) -> tuple[bytes, bytes]:
    """The status line and body for one request."""
    parts = urlsplit(target)
    if method == "DELETE":
        return b"204 No Content", b""
    if method == "POST" and parts.path == "/v1/events":
        return b"202 Accepted", b'{"duplicate":false,"due_at":0}'
    if method == "GET" and parts.path.endswith("/instances"):
        ids = parse_qs(parts.query).get("instance_id", [""])[0].split(",")
        project = parts.path.split("/")[2]
        records = [
            {**template, "id": i, "name": i, "server_id": f"srv-{i}", "project_id": project} for i in ids if i
        ]
        body = {"instances": records, "page_info": {"next_marker": None, "current_count": len(records)}}
        return b"200 OK", json.dumps({**body, "count": len(records)}).encode()
    return b"404 Not Found", b'{"error_code":"CDC.0404","error_msg":"not here"}'


async def serve(port: int, template: dict[str, Any], latency: float = 0.0) -> None:
    """Answer every connection's requests until the process is stopped."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = next(
                    (
                        int(v)
                        for n, _, v in (h.partition(":") for h in lines[1:])
                        if n.lower() == "content-length"
                    ),
                    0,
                )
                if length:
                    await reader.readexactly(length)
                status, body = answer(method, target, template)
                if latency and not target.startswith("/v1/events"):
                    await asyncio.sleep(latency)
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> int:
    """Serve on the port given, with the record template given (JSON) and the CloudDC latency given."""
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    asyncio.run(serve(int(sys.argv[1]), json.loads(sys.argv[2]), latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())

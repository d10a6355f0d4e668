"""A result sink on loopback (what ``K_SINK`` points at), for the demo, the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from werkzeug.wrappers import Request, Response

from reaper.servers import threaded_server


@contextlib.contextmanager
def serve_sink(receive: Callable[[bytes], int]) -> Iterator[str]:
    """Serve a sink whose every body goes to ``receive`` (which picks the status); yields its URL."""

    @Request.application
    def app(request: Request) -> Response:
        return Response("", receive(request.get_data()))

    server = threaded_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(10)

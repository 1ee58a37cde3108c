"""What the benchmarks share: a JWKS over real HTTP on 127.0.0.1, and uvicorn in a thread.

    from benchmarks._support import JwksServer, uvicorn_server

    with JwksServer(issuer.jwks(), delay=0.05) as server:
        server.url      # http://127.0.0.1:<port>/.well-known/jwks.json
        server.origin   # http://127.0.0.1:<port>
        server.body = issuer.jwks()   # what it serves (as JSON); change it any time
        server.hits     # fetches so far (set it to 0 to count again)

    with uvicorn_server(app) as base_url: ...   # http://127.0.0.1:<port>

The scripts put the repository root on sys.path (never benchmarks/ itself: benchmarks/http.py
would shadow the standard library's `http`) and import this as `benchmarks._support`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from grantex_guard import _demo
from grantex_guard.testing import JWKS_PATH


class JwksServer:
    """A JWKS served over HTTP on 127.0.0.1, counting fetches, answering after `delay` seconds."""

    def __init__(self, body: Any = None, delay: float = 0.0) -> None:
        self.body: Any = body if body is not None else {"keys": []}
        self.delay = delay
        self.hits = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return self.origin + JWKS_PATH

    def __enter__(self) -> JwksServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                time.sleep(server.delay)
                body = json.dumps(server.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # bursts of 100 cold verifications connect at once

        self._httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """`app` on uvicorn in a thread on a free port of 127.0.0.1, without access logs."""
    with _demo.uvicorn_server(app, access_log=False) as base_url:
        yield base_url

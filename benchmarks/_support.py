"""The JWKS server verify.py and http.py share: real HTTP on 127.0.0.1, fetches counted.

    from benchmarks._support import JwksServer

    with JwksServer(issuer.jwks(), delay=0.05) as server:
        server.url      # http://127.0.0.1:<port>/.well-known/jwks.json
        server.origin   # http://127.0.0.1:<port>
        server.body = issuer.jwks()   # what it serves (as JSON); change it any time
        server.hits     # fetches so far (set it to 0 to count again)

`LocalIssuer.serve()` (what load.py uses) counts fetches too, but it cannot answer late
(the cold-burst comparison needs a JWKS that takes 50 ms), its origin is known only after
the issuer is built (http.py needs an issuer named after that origin, as grantex-fastapi
derives it).
uvicorn in a thread is `grantex_guard._demo.uvicorn_server`.

The scripts put the repository root on sys.path (never benchmarks/ itself: benchmarks/http.py
would shadow the standard library's `http`) and import this as `benchmarks._support`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from grantex_guard.testing import JWKS_PATH


class JwksServer(ThreadingHTTPServer):
    """A JWKS served over HTTP on 127.0.0.1, counting fetches, answering after `delay` seconds."""

    request_queue_size = 256  # bursts of 100 cold verifications connect at once

    def __init__(self, body: Any = None, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body: Any = body if body is not None else {"keys": []}
        self.delay = delay
        self.hits = 0
        self.lock = threading.Lock()
        self.origin = f"http://127.0.0.1:{self.server_address[1]}"
        self.url = self.origin + JWKS_PATH

    def __enter__(self) -> JwksServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: JwksServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits += 1
        time.sleep(self.server.delay)
        body = json.dumps(self.server.body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

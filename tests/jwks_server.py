"""A controllable JWKS HTTP server and real keys, for tests.

    from tests.jwks_server import JWKSServer, jwks, public_jwk, rsa_key

    with JWKSServer(jwks(public_jwk(rsa_key(), kid="k1"))) as server:
        server.url          # http://127.0.0.1:<port>/.well-known/jwks.json
        server.body = {...} # dict/list (sent as JSON) or bytes; change it any time
        server.status = 500
        server.headers["Content-Type"] = "text/html"
        server.delay = 1.0  # seconds to wait before answering
        server.drip = 0.05  # send the body one byte per `drip` seconds
        server.redirect = server.base_url + "/moved"   # `url` answers 302 to it
        server.hits         # requests received so far (any path)
        server.requests     # (path, headers) of each request
        server.paths        # the path of each request

Every path other than the JWKS path serves the body too, so a redirect
target on the same server is a valid JWKS. Defaults: status 200, headers
`Content-Type: application/json` and `Cache-Control: no-store` (what the
Grantex service sends). The server runs in a daemon thread on 127.0.0.1 with
a free port (or `JWKSServer(body, port=...)`: a host coming back up on a port
clients already know); `stop()` does not wait for slow handlers.
`keep_alive=False` answers in HTTP/1.0 and closes every connection, so that no
kept-alive connection outlives a stopped server.

Keys: `rsa_key(bits)`, `ec_key()` (P-256 unless a curve is given),
`ed25519_key()`; `public_jwk(key, kid=..., alg=..., use=...)` gives the public
JWK (alg defaults to RS256 / ES256 by key type, None leaves it out);
`jwks(*jwks)` wraps them as `{"keys": [...]}`; `closed_port_url()` is a URL
nothing listens on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from grantex_guard.jose import b64url_encode

JWKS_PATH = "/.well-known/jwks.json"

__all__ = [
    "JWKS_PATH",
    "JWKSServer",
    "closed_port_url",
    "ec_key",
    "ed25519_key",
    "jwks",
    "public_jwk",
    "rsa_key",
]


class JWKSServer:
    """An HTTP server whose answers tests change between requests."""

    def __init__(self, body: Any = None, *, port: int = 0, keep_alive: bool = True) -> None:
        self.body: Any = body if body is not None else {"keys": []}
        self.port = port
        self.keep_alive = keep_alive
        self.status = 200
        self.headers: dict[str, str] = {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
        }
        self.delay = 0.0
        self.drip = 0.0
        self.redirect: str | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [path for path, _ in self.requests]

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + JWKS_PATH

    def body_bytes(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()

    def start(self) -> JWKSServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if server.keep_alive else "HTTP/1.0"

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append((self.path, dict(self.headers.items())))
                if server.delay:
                    time.sleep(server.delay)
                if server.redirect is not None and self.path == JWKS_PATH:
                    self.send_response(302)
                    self.send_header("Location", server.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.body_bytes()
                self.send_response(server.status)
                for name, value in server.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drip:
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(server.drip)
                else:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that hang up early (timeouts, size limits) are expected

        self._httpd = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> JWKSServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def closed_port_url() -> str:
    """A JWKS URL on a local port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{JWKS_PATH}"


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _b64_int(number: int, length: int | None = None) -> str:
    size = length or max(1, (number.bit_length() + 7) // 8)
    return b64url_encode(number.to_bytes(size, "big"))


_CURVES = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}
_DEFAULT_ALG = object()


def public_jwk(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    *,
    kid: str | None,
    alg: Any = _DEFAULT_ALG,
    use: str | None = "sig",
) -> dict[str, Any]:
    """The public JWK of `key`; `kid`, `alg` and `use` are left out when None."""
    jwk: dict[str, Any]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "RSA", "n": _b64_int(numbers.n), "e": _b64_int(numbers.e)}
        default_alg = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        crv, size = _CURVES[key.curve.name]
        point = key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": crv, "x": _b64_int(point.x, size), "y": _b64_int(point.y, size)}
        default_alg = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[crv]
    else:
        raw = key.public_key().public_bytes_raw()
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
        default_alg = "EdDSA"
    chosen_alg = default_alg if alg is _DEFAULT_ALG else alg
    extras = {"kid": kid, "alg": chosen_alg, "use": use}
    jwk.update({name: value for name, value in extras.items() if value is not None})
    return jwk


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}

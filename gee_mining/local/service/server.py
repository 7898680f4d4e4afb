"""Adapters around the router: a loopback HTTP server and an in-process transport."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httplib2

from gee_mining.local.core.errors import EngineError

IN_PROCESS_URL = "http://gee-mining.local"


def _split(uri: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(uri)
    return parts.path or "/", dict(parse_qsl(parts.query))


class LocalTransport:
    """An ``httplib2.Http``-compatible object for ``ee.Initialize(http_transport=...)``.

    Requests never touch a socket: they go straight to the router.
    """

    def __init__(self, router: Any, base_url: str = IN_PROCESS_URL):
        self.router = router
        self.base_url = base_url

    def request(self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None):
        path, query = _split(uri)
        status, ctype, content = self.router.handle(method, path, query, body, self.base_url)
        return httplib2.Response({"status": status, "content-type": ctype}), content

    def close(self) -> None:  # httplib2.Http has it; googleapiclient may call it
        pass


def check_loopback(host: str) -> str:
    """Refuse any address but loopback: the engine has no authentication."""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise EngineError(
            f"The local engine binds loopback addresses only (127.0.0.1, ::1), not {host!r}: "
            "it has no authentication. Use an SSH tunnel to reach it from elsewhere.",
            status=400,
        )
    return host


class _Handler(BaseHTTPRequestHandler):
    server_version = "gee-mining-local"
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out as separate writes; without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, query = _split(self.path)
        status, ctype, content = self.server.router.handle(method, path, query, body, self.server.base_url)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self):  # noqa: N802 - the http.server protocol
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def log_message(self, format, *args):  # quiet; the engine logs nothing per request
        pass


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class LocalServer:
    """The engine over HTTP on a loopback address, in a background thread."""

    def __init__(self, router: Any, host: str = "127.0.0.1", port: int = 0):
        check_loopback(host)
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._httpd = server_class((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.router = router
        bound_host, bound_port = self._httpd.server_address[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self._httpd.base_url = self.url
        self.host, self.port = bound_host, bound_port
        self._thread: threading.Thread | None = None

    def start(self) -> LocalServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gee-mining-engine", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Block until the server stops (``gee-mining serve``)."""
        if self._thread is not None:
            self._thread.join()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

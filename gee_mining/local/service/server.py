"""Adapters around the router: a loopback HTTP server and an in-process transport.

The HTTP server guards every request with its :class:`~.access.Access` rule (token, loopback
``Host`` and ``Origin``, JSON bodies; checked by the router) and watches each running request's
socket: when the client goes away, the request's cancellation event is set and its evaluation stops
at its next step (``Context.check_cancelled``), as it does when its time budget is spent.
"""

from __future__ import annotations

import atexit
import ipaddress
import selectors
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httplib2

from gee_mining.local.core.errors import EngineError
from gee_mining.local.service.access import Access, Caller, remove_runtime_file, write_runtime_file

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
    """Refuse any address but loopback: the engine's token guards it against the user's own browser,
    not against a network."""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise EngineError(
            f"The local engine binds loopback addresses only (127.0.0.1, ::1), not {host!r}: "
            "it is not made to face a network. Use an SSH tunnel to reach it from elsewhere.",
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
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        caller = Caller(headers, self.server.access)
        self.server.departures.watch(self.connection, caller.gone)
        try:
            status, ctype, content = self.server.router.handle(
                method, path, query, body, self.server.base_url, caller=caller
            )
        finally:
            self.server.departures.forget(self.connection)
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


class _Departures:
    """One thread that notices clients gone while their request runs: a running request's socket
    that turns readable with nothing to read (EOF, or an error) sets that request's ``gone`` event.

    The request's body has been read in full before it runs and the ``ee`` client sends nothing more
    until it has the answer, so a readable socket means the client closed it (or, rarely, pipelined
    the next request: then the socket is no longer watched).
    """

    def __init__(self, poll_s: float = 0.1):
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._poll_s = poll_s
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gee-mining-departures", daemon=True)
        self._thread.start()

    def watch(self, sock: socket.socket, gone: threading.Event) -> None:
        with self._lock:
            self._selector.register(sock, selectors.EVENT_READ, gone)

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass

    def _run(self) -> None:
        while not self._closed.is_set():
            if not self._selector.get_map():
                self._closed.wait(self._poll_s)
                continue
            for key, _ in self._selector.select(timeout=self._poll_s):
                try:
                    left = key.fileobj.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    left = b""
                if not left:
                    key.data.set()
                self.forget(key.fileobj)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._selector.close()


class LocalServer:
    """The engine over HTTP on a loopback address, in a background thread, guarded by a token
    (``token``; written to ``runtime_file`` while it serves)."""

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
        self.access = Access.new(bound_port)
        self._httpd.access = self.access
        self._httpd.departures = _Departures()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        """The token every request must carry (``Authorization: Bearer <token>``)."""
        return self.access.token

    @property
    def runtime_file(self):
        """Where the url and token are written for ``gee_mining.connect(url=...)``."""
        return self.access.runtime_file

    def start(self) -> LocalServer:
        write_runtime_file(self.url, self.access)
        atexit.register(remove_runtime_file, self.access)  # a process that never calls stop() leaves none
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
        self._httpd.departures.close()
        remove_runtime_file(self.access)

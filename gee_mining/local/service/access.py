"""Who may call an engine served over HTTP: its token, loopback names, its own origin, JSON bodies.

The engine on 127.0.0.1 is a local web service, as Jupyter is: any web page open in the user's
browser can send requests to it. A page must neither start computations and exports (a "simple"
cross-origin POST with a ``text/plain`` body needs no preflight) nor, through DNS rebinding (a name
of the attacker's that now resolves to 127.0.0.1), read the answers. So every request over HTTP:

- names a loopback host in its ``Host`` header (127.0.0.1, localhost or [::1], on the engine's
  port): a rebound name is refused (403);
- has no ``Origin`` header, or the engine's own loopback origin: a page's cross-origin request is
  refused (403);
- sends a POST body as JSON (``Content-Type: application/json``, which a page cannot send across
  origins without a preflight that the engine never grants): anything else is refused (415);
- carries the server's token, ``Authorization: Bearer <token>`` (how the ``ee`` client sends its
  credentials), drawn at random when the server starts: without it, refused (401). Thumbnail
  pixels and map tiles are the exception: their URLs hold a random id (as Earth Engine's do) and are
  fetched by browsers and map widgets, which send no credentials.

The token is printed by ``gee-mining serve`` and written, readable by the user only (0600), to a
runtime file (:func:`runtime_file`) where ``gee_mining.connect(url=...)`` finds it, as Jupyter's
runtime files are found. The in-process transport has no socket and needs none of this.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gee_mining.local.core.errors import EngineError

RUNTIME_ENV = "GEE_MINING_RUNTIME_DIR"  # where runtime files go (tests, several users' setups)
TOKEN_ENV = "GEE_MINING_TOKEN"  # a token given outright, read by connect(url=...)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
CAPABILITY_ROUTES = ("thumbnail_pixels", "map_tile")  # GETs whose URL holds a random id: no token


@dataclass(frozen=True)
class Access:
    """The access rule of one server: its token and the port its loopback names must carry."""

    token: str
    port: int
    runtime_file: Path | None = None

    @classmethod
    def new(cls, port: int) -> Access:
        """A rule with a fresh random token (256 bits), to be written to the port's runtime file."""
        return cls(secrets.token_urlsafe(32), port, runtime_file(port))

    def check(self, route: str, method: str, headers: Mapping[str, list[str]]) -> None:
        """Refuse a request of ``route`` whose headers (lower-case names) break the rule."""
        self._check_host(_one(headers, "host"))
        self._check_origin(_one(headers, "origin"))
        if method.upper() == "POST":
            _check_json(_one(headers, "content-type"))
        if route not in CAPABILITY_ROUTES:
            self._check_token(_one(headers, "authorization"))

    def _check_host(self, host: str | None) -> None:
        name, port = _split_host(host or "")
        if name not in LOOPBACK_NAMES or port not in (None, str(self.port)):
            raise EngineError(
                f"Host {host!r} refused: the local engine answers only requests addressed to 127.0.0.1, "
                f"localhost or [::1] on port {self.port} (a web page reaching it under another name, "
                "by DNS rebinding, must not read its answers).",
                status=403,
            )

    def _check_origin(self, origin: str | None) -> None:
        own = [f"http://{name}:{self.port}" for name in LOOPBACK_NAMES]
        if origin is not None and origin.lower() not in own:
            raise EngineError(
                f"Cross-origin request refused (Origin {origin!r}): the local engine answers only its own "
                f"origin ({own[0]}). Reach it from Python with gee_mining.connect(url=...), not from a web page.",
                status=403,
            )

    def _check_token(self, authorization: str | None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            where = f" and wrote it to {self.runtime_file}" if self.runtime_file else ""
            raise EngineError(
                f"{'Wrong' if authorization else 'Missing'} token: the local engine on port {self.port} answers "
                f"only requests with 'Authorization: Bearer <token>'. `gee-mining serve` printed the token{where}; "
                f"gee_mining.connect(url=...) reads it from there (or from ${TOKEN_ENV}).",
                status=401,
            )


@dataclass(frozen=True)
class Caller:
    """What an HTTP request brings besides its method, path and body: its headers (lower-case names,
    every value given), its server's access rule, and an event set when its client goes away."""

    headers: Mapping[str, list[str]]
    access: Access
    gone: threading.Event = field(default_factory=threading.Event)


def _one(headers: Mapping[str, list[str]], name: str) -> str | None:
    """The one value of header ``name`` (None when absent); a header given twice is refused."""
    values = headers.get(name) or []
    if len(values) > 1:
        raise EngineError(f"Header {name!r} given {len(values)} times: give it once.", status=400)
    return values[0] if values else None


def _split_host(host: str) -> tuple[str, str | None]:
    """``Host`` as (lower-case name, port or None): '127.0.0.1:80', '[::1]:80', 'localhost'."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest[1:] if rest.startswith(":") else (None if not rest else rest)
    name, colon, port = host.partition(":")
    return name, port if colon else None


def _check_json(content_type: str | None) -> None:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise EngineError(
            f"Content-Type {content_type!r} refused: the local engine takes POST bodies as JSON only "
            "(Content-Type: application/json), as the ee client sends them.",
            status=415,
        )


# -- runtime files -------------------------------------------------------------------------------


def runtime_dir() -> Path:
    """Where servers leave their runtime files: ``$GEE_MINING_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/gee-mining``, else ``~/.local/share/gee-mining/servers``."""
    if os.environ.get(RUNTIME_ENV):
        return Path(os.environ[RUNTIME_ENV])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "gee-mining"
    return Path.home() / ".local" / "share" / "gee-mining" / "servers"


def runtime_file(port: int) -> Path:
    """The runtime file of the server on ``port``."""
    return runtime_dir() / f"server-{port}.json"


def write_runtime_file(url: str, access: Access) -> Path:
    """Write the server's url and token, readable by the user only, where :func:`find_token` looks."""
    path = access.runtime_file or runtime_file(access.port)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "port": access.port, "token": access.token, "pid": os.getpid()}, f)
    os.replace(partial, path)
    return path


def remove_runtime_file(access: Access) -> None:
    """Remove the server's runtime file, unless another server on the same port has replaced it."""
    path = access.runtime_file
    try:
        if path is not None and json.loads(path.read_text()).get("token") == access.token:
            path.unlink()
    except (OSError, ValueError):
        pass


def find_token(url: str) -> str | None:
    """The token of the engine serving at ``url``: ``$GEE_MINING_TOKEN``, else its runtime file's
    (None when there is none). A runtime file that others may read or write is refused."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    port = urlsplit(url).port
    if port is None:
        return None
    path = runtime_file(port)
    try:
        info = path.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise EngineError(
            f"{path}: a runtime file must be the user's own and private (chmod 600); it is not, so its token "
            "is not used. Remove it and restart `gee-mining serve`.",
            status=403,
        )
    try:
        token = json.loads(path.read_text()).get("token")
    except (OSError, ValueError):
        return None
    return token if isinstance(token, str) else None

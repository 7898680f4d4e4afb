"""``gee_mining.connect``: point the ``ee`` module at an engine.

``connect(engine="earthengine")`` initialises the real Earth Engine service
with the user's credentials. ``connect(engine="local")`` starts (or reuses) the
local engine and initialises the same ``ee`` module against it, in-process by
default or over HTTP on loopback. After ``connect``, user code is plain ``ee``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ee
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.exceptions import RefreshError
from google.cloud import storage as gcs

from gee_mining.errors import ConnectError, InputError
from gee_mining.io.storage import CloudStorage, FolderStorage, Storage
from gee_mining.local import CatalogError, EngineError, LocalEngine
from gee_mining.local.service.access import TOKEN_ENV, find_token, runtime_file
from gee_mining.local.service.server import IN_PROCESS_URL

DEFAULT_LOCAL_PROJECT = "gee-mining-local"


@dataclass(frozen=True)
class Connection:
    """Which engine ``ee`` now talks to."""

    engine: Literal["local", "earthengine"]
    project: str
    url: str | None = None
    transport: Literal["in-process", "http", "service"] = "service"
    catalog: Path | None = None
    local_engine: Any = field(default=None, repr=False, compare=False)

    @property
    def is_local(self) -> bool:
        return self.engine == "local"

    def describe(self) -> str:
        if self.engine == "earthengine":
            return f"Earth Engine (project {self.project})"
        where = self.url if self.transport == "http" else "in-process"
        if self.transport == "http" and self.local_engine is None:  # another process's engine: its catalog
            catalog = self.catalog or "the server's"
        else:
            catalog = self.catalog or "empty"
        return f"gee-mining local engine ({where}, project {self.project}, catalog {catalog})"

    @property
    def storage_root(self) -> Path | None:
        """The folder a local engine in this process keeps its exports in (None elsewhere)."""
        return None if self.local_engine is None else Path(self.local_engine.storage_root)

    def storage(self, bucket: str) -> Storage:
        """The bucket ``bucket`` where this engine's Cloud Storage exports land.

        Earth Engine: the real bucket (``google-cloud-storage``). The local engine: its storage (a
        folder under ``storage_root``, the emulator or real Cloud Storage, as ``connect(storage=...)``
        chose). A local engine serving from another process has storage this process cannot see:
        give its folder to :func:`open_bucket`.
        """
        if not self.is_local:
            return CloudStorage(bucket, gcs.Client(project=self.project))
        engine = self.local_engine
        if engine is None:
            raise InputError(
                f"the local engine at {self.url} serves from another process: give its storage folder "
                "(gee-mining serve --storage DIR; then --storage DIR here) to read what exports wrote."
            )
        if engine.storage_kind == "local":
            return FolderStorage(bucket, Path(engine.storage_root) / bucket)
        return CloudStorage(bucket, engine.storage_client())


# Engines already started in this process, by (catalog, storage): connect() reuses them.
_ENGINES: dict[tuple, Any] = {}
# The connection ``ee`` is initialised against (part of the ``ee`` session's state).
_CURRENT: list[Connection] = []


def current_connection() -> Connection | None:
    """The engine ``ee`` talks to now, as the last :func:`connect` set it (None before any)."""
    return _CURRENT[-1] if _CURRENT else None


def open_bucket(name: str, storage_root: str | os.PathLike | None = None) -> Storage:
    """The bucket ``name`` where the current engine's exports land (:meth:`Connection.storage`).

    ``storage_root``: the folder of a local engine's folder storage, for a local engine that serves
    from another process (``gee-mining serve --storage DIR``), whose storage this process cannot see.
    With no connection, Cloud Storage with the default project.
    """
    if storage_root is not None:
        return FolderStorage(name, Path(storage_root) / name)
    conn = current_connection()
    if conn is None:
        return CloudStorage(name, gcs.Client(project=None))
    return conn.storage(name)


def disconnect() -> None:
    """Close the local engine ``ee`` talks to (its servers, task workers, storage emulator) and forget it,
    with everything it loaded and cached: the next :func:`connect` starts a fresh one. ``ee`` is left
    uninitialised. Does nothing for Earth Engine's service or when nothing is connected."""
    conn = current_connection()
    if conn is None or conn.local_engine is None:
        return
    _CURRENT.clear()
    for key, engine in list(_ENGINES.items()):
        if engine is conn.local_engine:
            del _ENGINES[key]
    conn.local_engine.close()
    ee.Reset()


class EngineToken(Credentials):
    """The token of a local engine served over HTTP, as ``ee`` credentials: the client sends it with
    every request as ``Authorization: Bearer <token>``. It never expires; a refused one cannot be
    refreshed, only found again (the server was restarted)."""

    def __init__(self, token: str, url: str):
        super().__init__()
        self.token = token
        self.url = url

    def refresh(self, request: Any) -> None:
        raise RefreshError(
            f"the local engine at {self.url} refused its token: it was restarted or is another server. "
            "Connect again (gee_mining.connect(url=...) reads the new token from the server's runtime file)."
        )


def _token_for(url: str, token: str | None) -> EngineToken:
    """The credentials for the engine serving at ``url``: ``token``, else the one it left for us."""
    try:
        token = token or find_token(url)
    except EngineError as e:
        raise ConnectError(str(e)) from None
    if not token:
        port = url.rsplit(":", 1)[-1].split("/")[0]
        where = runtime_file(int(port)) if port.isdigit() else "its runtime file"
        raise ConnectError(
            f"no token for the local engine at {url}: it is not in {where} (is `gee-mining serve` running there, "
            f"as the same user?). Give connect(url=..., token=...) or set ${TOKEN_ENV} to the token it printed."
        )
    return EngineToken(token, url)


def _set_current(conn: Connection) -> Connection:
    _CURRENT[:] = [conn]
    return conn


def connect(
    engine: Literal["local", "earthengine"] = "local",
    project: str | None = None,
    *,
    catalog: str | os.PathLike | None = None,
    http: bool = False,
    url: str | None = None,
    token: str | None = None,
    port: int = 0,
    storage_root: str | os.PathLike | None = None,
    storage: Literal["local", "emulator", "gcs"] = "local",
    storage_options: dict[str, Any] | None = None,
    credentials: Any = "persistent",
    engine_settings: dict[str, Any] | None = None,
) -> Connection:
    """Initialise ``ee`` against an engine and say which.

    engine: "local" (the default: nothing to sign up for) or "earthengine".
    project: the Cloud project (required by Earth Engine; any id of 6+ characters locally).
    catalog: the local catalog TOML mapping asset ids to files (local engine);
        default: ``$GEE_MINING_CATALOG`` if set, else an empty catalog.
    http: serve the local engine over HTTP on 127.0.0.1 (``port``, 0 = a free
        one) instead of in-process; ``url``: use a local engine already serving there
        (``gee-mining serve``), with its ``token`` (default: ``$GEE_MINING_TOKEN``, else the token the
        server wrote to its runtime file, ``gee_mining.local.service.access.runtime_file``).
    storage: where the local engine's Cloud Storage exports go: "local"
        (folders under ``storage_root``), "emulator" (a Cloud Storage emulator
        on 127.0.0.1) or "gcs" (real buckets; ``storage_options`` may give
        ``project``, ``credentials`` or ``client``).
    engine_settings: the local engine's settings: ``{"limits": ...}``, Earth Engine's documented limits
        (on by default; ``False`` turns them all off, ``{"max_concurrent_tasks": 4}`` changes one:
        ``gee_mining.local.core.limits.Limits``, docs/engines.md), and ``{"faults": {"transient_rate": 0.2}}``
        (fault injection for tests, ``gee_mining.local.service.faults``; off by default).
    """
    _CURRENT.clear()  # until this connect succeeds, ``ee`` is connected to nothing we know
    if engine == "earthengine":
        return _set_current(_connect_earthengine(project, credentials))
    if engine != "local":
        raise ConnectError(f"Unknown engine {engine!r}: use 'local' or 'earthengine'.")
    project = project or DEFAULT_LOCAL_PROJECT
    if len(project) < 6:
        raise ConnectError(f"project={project!r}: Earth Engine project ids have at least 6 characters.")
    catalog_path = catalog or os.environ.get("GEE_MINING_CATALOG")
    catalog_path = Path(catalog_path).resolve() if catalog_path else None
    _skip_online_catalog()
    if url:
        _initialize(project, url=url.rstrip("/"), credentials=_token_for(url.rstrip("/"), token))
        return _set_current(Connection("local", project, url=url.rstrip("/"), transport="http", catalog=catalog_path))
    local = _local_engine(catalog_path, project, storage_root, storage, storage_options, engine_settings)
    if http:
        server = next((s for s in local._servers if port in (0, s.port)), None) or local.serve(port=port)
        _initialize(project, url=server.url, credentials=EngineToken(server.token, server.url))
        return _set_current(
            Connection("local", project, url=server.url, transport="http", catalog=catalog_path, local_engine=local)
        )
    _initialize(project, url=None, transport=local.transport())
    return _set_current(Connection("local", project, transport="in-process", catalog=catalog_path, local_engine=local))


def _connect_earthengine(project: str | None, credentials: Any) -> Connection:
    """Initialise ``ee`` against Earth Engine's service for ``project``."""
    if not project:
        raise ConnectError(
            "connect(engine='earthengine') needs project='your-cloud-project' "
            "(an Earth Engine-enabled Google Cloud project)."
        )
    try:
        ee.Initialize(credentials=credentials, project=project)
    except Exception as e:
        raise ConnectError(
            f"Earth Engine could not be initialised: {e}. Run `earthengine authenticate` "
            "first, or use connect(engine='local') to work offline."
        ) from e
    return Connection("earthengine", project)


def _local_engine(
    catalog_path: Path | None,
    project: str,
    storage_root: str | os.PathLike | None,
    storage: str,
    storage_options: dict[str, Any] | None,
    engine_settings: dict[str, Any] | None,
) -> Any:
    """The local engine of these settings: the one this process already started, or a new one."""
    settings_key = json.dumps(engine_settings or {}, sort_keys=True)
    key = (catalog_path, str(storage_root) if storage_root else None, project, storage, settings_key)
    local = _ENGINES.get(key)
    if local is None:
        try:
            local = LocalEngine(
                catalog_path,
                project=project,
                storage_root=storage_root,
                storage=storage,
                storage_options=storage_options,
                settings=engine_settings,
            )
        except CatalogError as e:
            raise ConnectError(str(e)) from None
        _ENGINES[key] = local
    return local


def _initialize(project: str, url: str | None, transport: Any = None, credentials: Any = None) -> None:

    ee.Reset()
    _skip_online_catalog()
    try:
        ee.Initialize(
            credentials=credentials or AnonymousCredentials(),
            url=url or IN_PROCESS_URL,
            http_transport=transport,
            project=project,
        )
    except Exception as e:
        raise ConnectError(f"The local engine at {url or 'in-process'} did not answer: {e}") from e


def _skip_online_catalog() -> None:
    """The client fetches Earth Engine's public STAC catalog to warn about deprecated
    datasets; the local engine has no such datasets and must not go online. A
    non-empty ``ee.deprecation.deprecated_assets`` (a public attribute) tells the
    client the list is already known."""
    ee.deprecation.deprecated_assets = {"(local engine: no deprecated assets)": None}

"""The gee-mining local engine: an Earth Engine of our own for one machine.

It answers Earth Engine's REST API, in-process (``LocalEngine.transport()``,
for ``ee.Initialize(http_transport=...)``) or over HTTP on a loopback address
(``LocalEngine.serve()``), and evaluates expression graphs with numpy,
shapely and pyproj over a local catalog of assets. The rest of gee_mining
reaches it only through the real ``ee`` client; :func:`gee_mining.connect`
starts it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from . import registry
from .catalog import Catalog, CatalogError
from .errors import EngineError
from .faults import Faults
from .operations import Operations
from .router import Router
from .server import IN_PROCESS_URL, LocalServer, LocalTransport, check_loopback
from .storage import make_storage

# The modules whose import registers the Earth Engine algorithms, imported on the first evaluation.
FAMILY_MODULES = (
    "gee_mining.local.number",
    "gee_mining.local.string",
    "gee_mining.local.list",
    "gee_mining.local.dictionary",
    "gee_mining.local.date",
    "gee_mining.local.projection",
    "gee_mining.local.geometry",
    "gee_mining.local.element",
    "gee_mining.local.feature",
    "gee_mining.local.filter",
    "gee_mining.local.reducer",
    "gee_mining.local.collection",
    "gee_mining.local.aggregate",
    "gee_mining.local.featurecollection",
    "gee_mining.local.join",
    "gee_mining.local.misc",
    "gee_mining.local.pixeltype",
    "gee_mining.local.image",
    "gee_mining.local.kernel",
    "gee_mining.local.image_reduce",
    "gee_mining.local.image_draw",
    "gee_mining.local.image_math",
    "gee_mining.local.image_visualize",
    "gee_mining.local.image_collection",
    "gee_mining.local.confusion_matrix",
    "gee_mining.local.classifier",
    "gee_mining.local.clusterer",
)
registry.register_families(*FAMILY_MODULES)

__all__ = ["Catalog", "CatalogError", "EngineError", "LocalEngine", "LocalServer", "check_loopback"]


class LocalEngine:
    """One engine: a catalog, its operations and its router.

    ``catalog``: a :class:`Catalog`, the path of a catalog TOML file, or None
    for an empty catalog. ``storage_root``: where exports land (a temporary
    folder by default). ``workers``: threads for batch tasks.

    ``storage``: where Cloud Storage exports go: "local" (folders under
    ``storage_root``, the default), "emulator" (a Cloud Storage emulator the
    engine starts in memory on 127.0.0.1, read with the official
    ``google-cloud-storage`` client: ``engine.storage_client()``) or "gcs"
    (real buckets with the user's credentials). ``storage_options``: see
    :func:`.storage.make_storage` (emulator ``buckets`` to create; gcs
    ``project``, ``credentials`` or ``client``).
    """

    def __init__(
        self,
        catalog: Catalog | str | os.PathLike | None = None,
        project: str = "local-project",
        storage_root: str | os.PathLike | None = None,
        workers: int | None = None,
        settings: dict[str, Any] | None = None,
        storage: str = "local",
        storage_options: dict[str, Any] | None = None,
    ):
        if catalog is None:
            catalog = Catalog()
        elif not isinstance(catalog, Catalog):
            catalog = Catalog.from_file(catalog)
        self.catalog = catalog
        self.project = project
        self.storage_root = Path(storage_root or tempfile.mkdtemp(prefix="gee-mining-storage-"))
        self.settings = dict(settings or {})
        self.storage_kind = storage
        self.storage, self._emulator = make_storage(storage, self.storage_root, project, storage_options)
        self.operations = Operations(project, workers or max(1, (os.cpu_count() or 2) - 1))
        self.faults = Faults.from_settings(self.settings)
        self.operations.faults = self.faults
        self.router = Router(self)
        self._servers: list[LocalServer] = []

    @property
    def storage_endpoint(self) -> str | None:
        """The loopback URL of the Cloud Storage emulator (storage="emulator"), else None."""
        return self._emulator.endpoint if self._emulator else None

    def storage_client(self):
        """A ``google.cloud.storage.Client`` on the engine's Cloud Storage (emulator or gcs)."""
        client = getattr(self.storage, "client", None)
        if client is None:
            raise EngineError("This engine stores exports in local folders (storage='local'); it has no client.")
        return client

    def transport(self) -> LocalTransport:
        """An in-process ``http_transport`` for ``ee.Initialize``."""
        return LocalTransport(self.router, IN_PROCESS_URL)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> LocalServer:
        """Start serving over HTTP on a loopback address (port 0: a free one)."""
        server = LocalServer(self.router, host, port).start()
        self._servers.append(server)
        return server

    def handle(self, method: str, path: str, query=None, body=None, base_url: str = IN_PROCESS_URL):
        return self.router.handle(method, path, query or {}, body, base_url)

    def close(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()
        self.operations.shutdown()
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None

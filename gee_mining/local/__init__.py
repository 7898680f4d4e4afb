"""The gee-mining local engine: an Earth Engine of our own for one machine.

It answers Earth Engine's REST API, in-process (``LocalEngine.transport()``,
for ``ee.Initialize(http_transport=...)``) or over HTTP on a loopback address
(``LocalEngine.serve()``), and evaluates expression graphs with numpy,
shapely and pyproj over a local catalog of assets. The rest of gee_mining
reaches it only through the real ``ee`` client; :func:`gee_mining.connect`
starts it.

The engine is layered, each layer importing only those below it:

- ``service``: the REST router, the HTTP server, operations, exports, storage, the catalog;
- ``raster``: images and their bands, the pixel grid, pixel requests, classifiers;
- ``values``: numbers, strings, lists, dates, geometries, features, collections, filters, reducers...;
- ``core``: errors, the algorithm signatures and registry, type checks, ``getInfo`` shapes, the evaluator.

This package composes them (:class:`LocalEngine`) and names the family modules
whose import registers the algorithms (``FAMILY_MODULES``). The rest of
gee_mining imports the engine from here only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from gee_mining.contracts.signatures import signatures
from gee_mining.local.core import registry
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.limits import Limits
from gee_mining.local.core.registry import implemented
from gee_mining.local.service.catalog import TABLE_SUFFIXES, Catalog, CatalogError, TableEntry, read_table
from gee_mining.local.service.export import load_exported_assets
from gee_mining.local.service.faults import Faults
from gee_mining.local.service.operations import Operations
from gee_mining.local.service.router import Router
from gee_mining.local.service.server import IN_PROCESS_URL, LocalServer, LocalTransport, check_loopback
from gee_mining.local.service.storage import make_storage

# The modules whose import registers the Earth Engine algorithms, imported on the first evaluation.
FAMILY_MODULES = (
    "gee_mining.local.values.number",
    "gee_mining.local.values.string",
    "gee_mining.local.values.list",
    "gee_mining.local.values.dictionary",
    "gee_mining.local.values.date",
    "gee_mining.local.values.projection",
    "gee_mining.local.values.geometry",
    "gee_mining.local.values.element",
    "gee_mining.local.values.feature",
    "gee_mining.local.values.filter",
    "gee_mining.local.values.reducer",
    "gee_mining.local.values.collection",
    "gee_mining.local.values.aggregate",
    "gee_mining.local.values.featurecollection",
    "gee_mining.local.values.join",
    "gee_mining.local.values.misc",
    "gee_mining.local.raster.pixeltype",
    "gee_mining.local.raster.image",
    "gee_mining.local.values.kernel",
    "gee_mining.local.raster.image_reduce",
    "gee_mining.local.raster.image_draw",
    "gee_mining.local.raster.image_math",
    "gee_mining.local.raster.image_visualize",
    "gee_mining.local.raster.image_collection",
    "gee_mining.local.values.confusion_matrix",
    "gee_mining.local.raster.classifier",
    "gee_mining.local.raster.clusterer",
)
registry.register_families(*FAMILY_MODULES)

__all__ = [
    "IN_PROCESS_URL",
    "TABLE_SUFFIXES",
    "Catalog",
    "CatalogError",
    "EngineError",
    "LocalEngine",
    "Limits",
    "LocalServer",
    "TableEntry",
    "check_loopback",
    "implemented",
    "read_table",
    "signatures",
]


class LocalEngine:
    """One engine: a catalog, its operations and its router.

    ``catalog``: a :class:`Catalog`, the path of a catalog TOML file, or None
    for an empty catalog. ``storage_root``: where exports land (by default a
    temporary folder, removed when the engine closes or the process ends).
    ``workers``: threads for batch tasks.

    ``storage``: where Cloud Storage exports go: "local" (folders under
    ``storage_root``, the default), "emulator" (a Cloud Storage emulator the
    engine starts in memory on 127.0.0.1, read with the official
    ``google-cloud-storage`` client: ``engine.storage_client()``) or "gcs"
    (real buckets with the user's credentials). ``storage_options``: see
    :func:`.storage.make_storage` (emulator ``buckets`` to create; gcs
    ``project``, ``credentials`` or ``client``).

    ``settings``: ``{"limits": ...}`` (Earth Engine's limits, on by default:
    :class:`~gee_mining.local.core.limits.Limits`; False turns them off, a
    mapping changes some), ``{"faults": ...}`` (fault injection, off by default).
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
        # storage the engine made itself is scratch: removed when the engine closes or the process ends
        self._remove_storage = (
            weakref.finalize(self, shutil.rmtree, self.storage_root, ignore_errors=True) if not storage_root else None
        )
        load_exported_assets(self.catalog, self.storage_root)  # table assets earlier engines exported here
        self.settings = dict(settings or {})
        self.storage_kind = storage
        self.storage, self._emulator = make_storage(storage, self.storage_root, project, storage_options)
        self.limits = Limits.from_settings(self.settings)
        self.operations = Operations(project, workers or max(1, (os.cpu_count() or 2) - 1), self.limits)
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
        self.catalog.close()
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None
        if self._remove_storage is not None:
            self._remove_storage()

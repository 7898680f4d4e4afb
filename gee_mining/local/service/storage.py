"""Where exports land: one small interface over a local folder or Cloud Storage.

Earth Engine writes exports to a Cloud Storage bucket (or Drive). The local
engine writes through a :class:`Storage`:

- :class:`FolderStorage`: ``<root>/<bucket>/<name>`` on disk (the default);
- :class:`CloudStorage`: the official ``google-cloud-storage`` client, either
  against a ``gcp-storage-emulator`` the engine starts on 127.0.0.1
  (:func:`start_emulator`, nothing leaves the machine) or against real buckets
  with the user's own credentials.

Objects appear whole or not at all: a folder write goes to a temporary name
and is renamed into place; a Cloud Storage upload is atomic per object.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from gcp_storage_emulator.server import create_server
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from gee_mining.local.core.errors import EngineError
from gee_mining.local.service.server import check_loopback


class Storage(Protocol):
    """The few operations exports need."""

    def write(self, bucket: str, name: str, data: bytes | BinaryIO) -> str:
        """Store ``data`` as ``bucket/name`` (replacing it) and return its URI."""

    def read(self, bucket: str, name: str) -> bytes: ...

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Object names in ``bucket`` starting with ``prefix``, sorted."""

    def delete(self, bucket: str, name: str) -> None: ...

    def uri(self, bucket: str, name: str) -> str: ...


def _check_name(bucket: str, name: str) -> None:
    if not bucket or "/" in bucket or bucket in (".", ".."):
        raise EngineError(f"Invalid bucket name '{bucket}'.")
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise EngineError(f"Invalid object name '{name}'.")


class FolderStorage:
    """Buckets as folders under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, bucket: str, name: str) -> Path:
        _check_name(bucket, name)
        return self.root / bucket / name

    def write(self, bucket: str, name: str, data: bytes | BinaryIO) -> str:
        path = self._path(bucket, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as fh:
                if isinstance(data, bytes | bytearray | memoryview):
                    fh.write(data)
                else:
                    while chunk := data.read(1 << 20):
                        fh.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(bucket, name)

    def read(self, bucket: str, name: str) -> bytes:
        path = self._path(bucket, name)
        if not path.is_file():
            raise EngineError(f"No such object: {bucket}/{name}.", status=404)
        return path.read_bytes()

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        base = self.root / bucket
        if not base.is_dir():
            return []
        names = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix) and not Path(n).name.startswith(".partial-"))

    def delete(self, bucket: str, name: str) -> None:
        self._path(bucket, name).unlink(missing_ok=True)

    def uri(self, bucket: str, name: str) -> str:
        return (self.root / bucket / name).resolve().as_uri()


class CloudStorage:
    """Buckets of Cloud Storage through ``google.cloud.storage.Client``.

    ``create_buckets``: create a missing bucket on first write (for the
    emulator, where buckets are scratch); against real Cloud Storage a
    missing bucket is an error, as on Earth Engine.
    """

    def __init__(self, client: Any, create_buckets: bool = False, endpoint: str | None = None):
        self.client = client
        self.create_buckets = create_buckets
        self.endpoint = endpoint

    def _bucket(self, bucket: str, create: bool = False):
        b = self.client.bucket(bucket)
        if create and self.create_buckets:
            try:
                self.client.create_bucket(bucket)
            except exceptions.Conflict:
                pass
        return b

    def write(self, bucket: str, name: str, data: bytes | BinaryIO) -> str:
        _check_name(bucket, name)
        blob = self._bucket(bucket, create=True).blob(name)
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                blob.upload_from_string(bytes(data), content_type="application/octet-stream")
            else:
                blob.upload_from_file(data, content_type="application/octet-stream")
        except exceptions.NotFound:
            raise EngineError(f"Cloud Storage bucket '{bucket}' does not exist or is not writable.") from None
        except exceptions.GoogleAPIError as e:
            raise EngineError(f"Writing gs://{bucket}/{name} failed: {e}") from None
        return self.uri(bucket, name)

    def read(self, bucket: str, name: str) -> bytes:
        try:
            return self._bucket(bucket).blob(name).download_as_bytes()
        except exceptions.NotFound:
            raise EngineError(f"No such object: gs://{bucket}/{name}.", status=404) from None

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        try:
            return sorted(b.name for b in self.client.list_blobs(bucket, prefix=prefix or None))
        except exceptions.NotFound:
            return []

    def delete(self, bucket: str, name: str) -> None:
        try:
            self._bucket(bucket).blob(name).delete()
        except exceptions.NotFound:
            pass

    def uri(self, bucket: str, name: str) -> str:
        return f"gs://{bucket}/{name}"


class Emulator:
    """A ``gcp-storage-emulator`` serving Cloud Storage's JSON API in memory on loopback."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        check_loopback(host)
        self._server = create_server(host, port, in_memory=True)
        # The emulator exposes neither a daemon switch nor the port it bound: both through its thread.
        self._server._api.daemon = True  # an engine left open must not keep the interpreter alive
        self._server.start()
        httpd = self._server._api._httpd
        self.host, self.port = httpd.server_address[:2]
        self.endpoint = f"http://{self.host}:{self.port}"

    def client(self, project: str = "local-project"):
        """A ``google.cloud.storage.Client`` talking to this emulator, anonymously."""
        return storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )

    def stop(self) -> None:
        self._server.stop()


def make_storage(
    kind: str, root: Path, project: str, options: dict[str, Any] | None = None
) -> tuple[Storage, Emulator | None]:
    """The storage of an engine: ``kind`` is "local", "emulator" or "gcs".

    options (all optional): for "emulator", ``port`` and ``buckets`` (created
    at start); for "gcs", ``project``, ``credentials`` (google-auth
    credentials; default: the user's application default credentials) or
    ``client`` (a ready ``google.cloud.storage.Client``).
    """
    options = dict(options or {})
    if kind == "local":
        return FolderStorage(root), None
    if kind == "emulator":
        emulator = Emulator(port=int(options.get("port", 0)))
        client = emulator.client(project)
        for bucket in _as_list(options.get("buckets")):
            client.create_bucket(bucket)
        return CloudStorage(client, create_buckets=True, endpoint=emulator.endpoint), emulator
    if kind == "gcs":
        client = options.get("client")
        if client is None:
            client = storage.Client(project=options.get("project"), credentials=options.get("credentials"))
        return CloudStorage(client), None
    raise EngineError(f"Unknown storage {kind!r}: use 'local', 'emulator' or 'gcs'.")


def _as_list(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)

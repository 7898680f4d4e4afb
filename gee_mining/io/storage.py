"""Where exports land: the ``Storage`` protocol and its two implementations.

A ``Storage`` is one Cloud Storage bucket as the current engine sees it: the objects an
export task wrote, listed, read, copied to a local file and checked (size, CRC32C). Exports,
export jobs and pixel tables read files only through it, so they work the same on Earth Engine
(real buckets, ``google-cloud-storage``), on a local engine backed by the Cloud Storage emulator
(``CloudStorage``) and on a local engine with folder storage (``FolderStorage``).
``gee_mining.connection.Connection.storage`` hands out the right one.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import google_crc32c

from gee_mining.errors import InputError


@runtime_checkable
class Storage(Protocol):
    """One bucket's objects: what exports, export jobs and pixel tables need of storage."""

    name: str

    def list(self, prefix: str = "") -> list[str]:
        """Object names starting with ``prefix``, sorted."""
        ...

    def exists(self, name: str) -> bool:
        """Whether the object ``name`` is there."""
        ...

    def read(self, name: str) -> bytes:
        """The object's bytes."""
        ...

    def download(self, name: str, path: str | os.PathLike) -> Path:
        """Copy one object to ``path`` atomically (a partial file never stays behind)."""
        ...

    def crc32c(self, name: str) -> str:
        """The object's CRC32C, base64 as Cloud Storage reports it."""
        ...

    def size(self, name: str) -> int:
        """The object's size in bytes (-1 when it is missing)."""
        ...


def check_bucket_name(name: str, where: str = "bucket") -> str:
    """``name`` if it is a valid Cloud Storage bucket name, else InputError naming the rule it breaks.

    The one rule for every destination (``export-cells --out gs://...``, export jobs, pixel tables), Cloud
    Storage's (https://cloud.google.com/storage/docs/buckets#naming): 3-63 characters (up to 222 with dots, each
    dot-separated part at most 63); lowercase letters, digits, '-', '_' and '.'; starting and ending with a letter
    or digit; not an IP address; not starting with "goog" nor containing "google".
    """
    fix = 'e.g. "my-mining-exports"'
    if not isinstance(name, str) or not name:
        raise InputError(f"{where} {name!r}: give a Cloud Storage bucket name, {fix}.")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*[a-z0-9]", name):
        raise InputError(
            f"{where} {name!r}: a bucket name uses only lowercase letters, digits, '-', '_' and '.', and starts and "
            f"ends with a letter or digit, {fix}."
        )
    parts = name.split(".")
    if len(name) < 3 or len(name) > (222 if len(parts) > 1 else 63) or any(len(p) > 63 or not p for p in parts):
        raise InputError(
            f"{where} {name!r}: a bucket name has 3-63 characters (up to 222 with dots, at most 63 between dots), {fix}."
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise InputError(f"{where} {name!r}: a bucket name cannot be an IP address, {fix}.")
    if name.startswith("goog") or "google" in name:
        raise InputError(f"{where} {name!r}: a bucket name cannot start with 'goog' or contain 'google', {fix}.")
    return name


GS_EXAMPLE = "gs://my-mining-exports/cells/z16"


def parse_gs_url(url: Any, where: str = "destination") -> tuple[str, str]:
    """``gs://BUCKET/PREFIX`` as (bucket, prefix without its outer slashes), else InputError naming ``where``,
    the URL and the fix: the one reader of a Cloud Storage destination for every command and job.

    The bucket follows :func:`check_bucket_name`; the prefix may be empty, and is object names' folders, so it
    has no empty, ``.`` or ``..`` part (``a//b``, ``../x``: Earth Engine would write a different object than the
    one the pipeline then looks for) and no control characters."""
    if not isinstance(url, str) or not url.startswith("gs://"):
        raise InputError(f"{where} {url!r}: give a Cloud Storage URL gs://BUCKET/PREFIX, e.g. {GS_EXAMPLE}.")
    bucket, _, prefix = url[len("gs://") :].partition("/")
    if not bucket:
        raise InputError(f"{where} {url!r} names no bucket: give gs://BUCKET/PREFIX, e.g. {GS_EXAMPLE}.")
    check_bucket_name(bucket, f"{where} {url!r}: bucket")
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts) or any(ord(c) < 32 or ord(c) == 127 for c in prefix):
        raise InputError(
            f"{where} {url!r}: the prefix after the bucket is folder names separated by single '/', with no '.', "
            f"'..' or control characters, e.g. {GS_EXAMPLE}."
        )
    return bucket, prefix


def gs_key(url: str, name: str, where: str = "destination") -> tuple[str, str]:
    """(bucket, object name) of ``name`` under the destination ``url`` (:func:`parse_gs_url`)."""
    bucket, prefix = parse_gs_url(url, where)
    return bucket, f"{prefix}/{name}" if prefix else name


def _crc32c_of(data: bytes) -> str:
    """CRC32C of ``data``, base64 as Cloud Storage writes it."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _download(storage: Storage, name: str, path: str | os.PathLike) -> Path:
    """Write ``storage``'s object ``name`` to ``path`` through a ``.partial-`` file, renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{path.name}")
    try:
        tmp.write_bytes(storage.read(name))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class FolderStorage:
    """A bucket kept as a folder (a local engine's folder storage): object names are relative paths."""

    def __init__(self, name: str, folder: str | os.PathLike):
        self.name, self.folder = name, Path(folder)

    def list(self, prefix: str = "") -> list[str]:
        """Only the folder the prefix ends in is scanned (not the whole bucket): a job verifying
        each of 10,000 cells must not read 10,000 names 10,000 times."""
        parent, _, stem = prefix.rpartition("/")
        base = self.folder / parent if parent else self.folder
        if not base.is_dir():
            return []
        found = []
        for entry in os.scandir(base):
            if not entry.name.startswith(stem) or entry.name.startswith(".partial-"):
                continue
            if entry.is_file():
                found.append(f"{parent}/{entry.name}" if parent else entry.name)
            elif entry.is_dir():
                found += [p.relative_to(self.folder).as_posix() for p in Path(entry.path).rglob("*") if p.is_file()]
        return sorted(found)

    def exists(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def download(self, name: str, path: str | os.PathLike) -> Path:
        return _download(self, name, path)

    def crc32c(self, name: str) -> str:
        return _crc32c_of(self.read(name))

    def size(self, name: str) -> int:
        path = self.folder / name
        return path.stat().st_size if path.is_file() else -1


class CloudStorage:
    """A Cloud Storage bucket through a ``google.cloud.storage.Client`` (real buckets or the emulator)."""

    def __init__(self, name: str, client: Any):
        self.name, self.client = name, client

    def list(self, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client.list_blobs(self.name, prefix=prefix))

    def exists(self, name: str) -> bool:
        return self.client.bucket(self.name).get_blob(name) is not None

    def read(self, name: str) -> bytes:
        return self.client.bucket(self.name).blob(name).download_as_bytes()

    def download(self, name: str, path: str | os.PathLike) -> Path:
        return _download(self, name, path)

    def crc32c(self, name: str) -> str:
        """Cloud Storage's own checksum when it has one, else computed from the bytes."""
        blob = self.client.bucket(self.name).get_blob(name)
        if blob is not None and blob.crc32c:
            return blob.crc32c
        return _crc32c_of(self.read(name))

    def size(self, name: str) -> int:
        blob = self.client.bucket(self.name).get_blob(name)
        return int(blob.size) if blob is not None else -1

"""Export storage: a local folder and Cloud Storage through the official client against
the loopback emulator (gee_mining.local.service.storage)."""

from __future__ import annotations

import io

import pytest

from gee_mining.local import EngineError, LocalEngine
from gee_mining.local.service.storage import CloudStorage, Emulator, FolderStorage, make_storage


@pytest.fixture(scope="module")
def emulator():
    emu = Emulator()
    yield emu
    emu.stop()


@pytest.fixture(params=["folder", "emulator"])
def storage(request, tmp_path, emulator):
    if request.param == "folder":
        return FolderStorage(tmp_path)
    return CloudStorage(emulator.client("storage-test"), create_buckets=True)


def test_emulator_binds_loopback_on_a_free_port(emulator):
    assert emulator.host == "127.0.0.1" and emulator.port > 0
    assert emulator.endpoint == f"http://127.0.0.1:{emulator.port}"


def test_emulator_refuses_other_addresses():
    with pytest.raises(EngineError, match="loopback"):
        Emulator(host="0.0.0.0")


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 4096])
def test_write_read_round_trip(storage, data):
    uri = storage.write("bucket-a", "dir/obj.bin", data)
    assert uri == storage.uri("bucket-a", "dir/obj.bin")
    assert storage.read("bucket-a", "dir/obj.bin") == data
    storage.write("bucket-a", "dir/stream.bin", io.BytesIO(data))
    assert storage.read("bucket-a", "dir/stream.bin") == data


def test_list_by_prefix_and_delete(storage):
    for name in ["p/a.tif", "p/b.tif", "q/c.tif", "pa.tif"]:
        storage.write("bucket-b", name, name.encode())
    assert storage.list("bucket-b", "p/") == ["p/a.tif", "p/b.tif"]
    assert storage.list("bucket-b", "p") == ["p/a.tif", "p/b.tif", "pa.tif"]
    assert storage.list("bucket-b") == ["p/a.tif", "p/b.tif", "pa.tif", "q/c.tif"]
    storage.delete("bucket-b", "p/a.tif")
    storage.delete("bucket-b", "p/a.tif")  # deleting twice is harmless
    assert storage.list("bucket-b", "p/") == ["p/b.tif"]
    assert storage.list("no-such-bucket") == []


def test_replacing_an_object(storage):
    storage.write("bucket-c", "x", b"old")
    storage.write("bucket-c", "x", b"new")
    assert storage.read("bucket-c", "x") == b"new"


def test_missing_object_is_an_error(storage):
    with pytest.raises(EngineError, match="No such object"):
        storage.read("bucket-d", "nothing")


@pytest.mark.parametrize("bucket,name", [("", "a"), ("a/b", "c"), ("b", ""), ("b", "../x"), ("b", "a//c")])
def test_invalid_names(storage, bucket, name):
    with pytest.raises(EngineError, match="Invalid"):
        storage.write(bucket, name, b"")


def test_folder_write_leaves_no_partial_file(tmp_path):
    class Broken(io.RawIOBase):
        def readinto(self, b):
            raise OSError("disk on fire")

    store = FolderStorage(tmp_path)
    with pytest.raises(OSError, match="disk on fire"):
        store.write("bkt", "half.bin", Broken())
    assert list((tmp_path / "bkt").iterdir()) == []


def test_cloud_objects_carry_crc32c(emulator):
    """The official client verifies a download's crc32c against the object's metadata."""
    import base64

    import google_crc32c

    client = emulator.client("storage-test")
    CloudStorage(client, create_buckets=True).write("crc-bucket", "o", b"checksummed")
    blob = client.bucket("crc-bucket").get_blob("o")
    assert base64.b64decode(blob.crc32c) == google_crc32c.Checksum(b"checksummed").digest()
    assert blob.download_as_bytes(checksum="crc32c") == b"checksummed"


def test_make_storage_kinds(tmp_path):
    store, emu = make_storage("local", tmp_path, "p-project")
    assert isinstance(store, FolderStorage) and emu is None
    with pytest.raises(EngineError, match="Unknown storage"):
        make_storage("s3", tmp_path, "p-project")


def test_engine_with_emulator_storage(tmp_path):
    engine = LocalEngine(storage_root=tmp_path, storage="emulator", storage_options={"buckets": ["made"]})
    try:
        assert engine.storage_endpoint.startswith("http://127.0.0.1:")
        client = engine.storage_client()
        assert [b.name for b in client.list_buckets()] == ["made"]
        assert engine.storage.write("made", "k", b"v") == "gs://made/k"
    finally:
        engine.close()
    local = LocalEngine(storage_root=tmp_path)
    try:
        assert local.storage_endpoint is None
        with pytest.raises(EngineError, match="local folders"):
            local.storage_client()
    finally:
        local.close()


BAD_GS_URLS = [
    ("s3://my-bucket/cells", "give a Cloud Storage URL gs://BUCKET/PREFIX"),
    ("gs:/my-bucket/cells", "give a Cloud Storage URL gs://BUCKET/PREFIX"),
    (None, "give a Cloud Storage URL gs://BUCKET/PREFIX"),
    ("gs://", "names no bucket"),
    ("gs:///cells", "names no bucket"),
    ("gs://My-Bucket/cells", "lowercase letters"),
    ("gs://my-bucket/../cells", r"no '\.', '\.\.'"),
    ("gs://my-bucket/a//b", "single '/'"),
    ("gs://my-bucket/a\nb", "control characters"),
]


@pytest.mark.parametrize("url, message", BAD_GS_URLS)
def test_one_gs_url_parser_gives_every_user_the_same_clear_error(url, message):
    """Every reader of a gs:// destination (export specs, the monitor, the pyramid's composite, the bare parser)
    refuses a bad URL with one InputError naming it and the fix (before, each parsed by its own copy: a '..' or
    '//' prefix, or an s3:// monitor destination, went through)."""
    from gee_mining.batch.exports import ExportSpec
    from gee_mining.errors import InputError
    from gee_mining.io.storage import parse_gs_url
    from gee_mining.monitor.core import MonitorSpec
    from gee_mining.pyramid.probability import export_composite

    users = {
        "parser": lambda u: parse_gs_url(u, "destination"),
        "export spec": ExportSpec,
        "monitor": lambda u: MonitorSpec(years=(2020,), destination=u),
        "composite": lambda u: export_composite(None, 32633, (0, 0, 100, 100), destination=u),
    }
    for who, use in users.items():
        with pytest.raises(InputError, match=message) as info:
            use(url)
        assert "gs://" in str(info.value) and "\n" not in str(info.value).replace(repr(url), ""), who


def test_gs_urls_parse_to_bucket_and_prefix():
    from gee_mining.batch.exports import ExportSpec
    from gee_mining.io.storage import gs_key, parse_gs_url

    assert parse_gs_url("gs://my-bucket/cells/z16/") == ("my-bucket", "cells/z16")
    assert parse_gs_url("gs://my-bucket") == parse_gs_url("gs://my-bucket/") == ("my-bucket", "")
    assert gs_key("gs://my-bucket/run", "composites") == ("my-bucket", "run/composites")
    assert gs_key("gs://my-bucket", "composites") == ("my-bucket", "composites")
    spec = ExportSpec("gs://my.bucket.example/cells/z14/")
    assert (spec.bucket, spec.prefix, spec.file_prefix("c")) == ("my.bucket.example", "cells/z14", "cells/z14/c")


@pytest.mark.parametrize("url, message", [BAD_GS_URLS[0], BAD_GS_URLS[6]])
def test_cli_grid_export_refuses_a_bad_url_in_one_line_before_any_work(tmp_path, capsys, url, message):
    import json
    import re

    from gee_mining.cli.main import main

    src = tmp_path / "mines.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": []}))  # never read: the URL fails first
    assert main(["grid", "--polygons", str(src), "--cell", "5500", "--export", url]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "--export" in err and "Traceback" not in err, err

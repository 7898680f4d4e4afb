"""The tensorflow-free TFRecord writer and reader of gee_mining.local.service.tfrecord, checked
against tensorflow itself (``tf.io.TFRecordWriter``, ``tf.train.Example``, ``tf.data``)
and against the published CRC-32C check value.

The format: https://www.tensorflow.org/tutorials/load_data/tfrecord ("TFRecords format
details": uint64 length, uint32 masked_crc32_of_length, byte data[length], uint32
masked_crc32_of_data; masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8).
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile

import numpy as np
import pytest

from gee_mining.local.service.tfrecord import (
    RecordWriter,
    decode_example,
    encode_example,
    frame,
    masked_crc32c,
    read_records,
)


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="keras-"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow", reason="tensorflow (the `tf` extra) is the reference reader")


def test_crc32c_check_value():
    """CRC-32C (Castagnoli) of b"123456789" is 0xE3069283 (RFC 3720, B.4 check value)."""
    import google_crc32c

    assert google_crc32c.value(b"123456789") == 0xE3069283
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("records", [[b""], [b"a"], [b"hello", b"", b"x" * 100_000], [bytes(range(256)) * 3]])
def test_framing_is_byte_identical_to_tensorflow(tf, tmp_path, records):
    path = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    assert b"".join(frame(r) for r in records) == path.read_bytes()
    assert list(read_records(path.read_bytes())) == records


@pytest.mark.parametrize(
    "features",
    [
        {"B1": np.arange(6, dtype=np.float32).reshape(2, 3)},
        {"B4": np.array([0.5, -1.25, 3e38, 1e-30], np.float32), "ndvi": np.zeros(0, np.float32)},
        {f"band_{i}": np.random.default_rng(i).normal(size=(16, 16)).astype(np.float32) for i in range(5)},
    ],
)
def test_example_encoding_parses_in_tensorflow(tf, features):
    ours = encode_example(features)
    parsed = tf.train.Example.FromString(ours)
    assert set(parsed.features.feature) == set(features)
    for name, values in features.items():
        np.testing.assert_array_equal(
            np.array(parsed.features.feature[name].float_list.value, np.float32), values.ravel()
        )
    # and our decoder reads tensorflow's own serialization of the same Example
    theirs = tf.train.Example(
        features=tf.train.Features(
            feature={n: tf.train.Feature(float_list=tf.train.FloatList(value=v.ravel())) for n, v in features.items()}
        )
    ).SerializeToString()
    decoded = decode_example(theirs)
    for name, values in features.items():
        np.testing.assert_array_equal(decoded[name], values.ravel())


def test_decoder_reads_int64_and_bytes_lists(tf):
    ex = tf.train.Example(
        features=tf.train.Features(
            feature={
                "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, -2, 2**40])),
                "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"ab", b""])),
            }
        )
    ).SerializeToString()
    out = decode_example(ex)
    assert out["i"].tolist() == [1, -2, 2**40]
    assert out["s"] == [b"ab", b""]


@pytest.mark.parametrize("compress", [False, True])
def test_files_read_with_tf_data(tf, tmp_path, compress):
    patches = [np.full((4, 5), k, np.float32) + np.arange(20, dtype=np.float32).reshape(4, 5) for k in range(3)]
    path = tmp_path / ("p.tfrecord.gz" if compress else "p.tfrecord")
    with path.open("wb") as fh:
        w = RecordWriter(fh, compress)
        for p in patches:
            w.write(encode_example({"b": p, "c": -p}))
        w.close()
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    spec = {"b": tf.io.FixedLenFeature([4, 5], tf.float32), "c": tf.io.FixedLenFeature([4, 5], tf.float32)}
    ds = tf.data.TFRecordDataset([str(path)], compression_type="GZIP" if compress else "")
    got = [tf.io.parse_single_example(r, spec) for r in ds]
    assert len(got) == 3
    for g, p in zip(got, patches, strict=True):
        np.testing.assert_array_equal(g["b"].numpy(), p)
        np.testing.assert_array_equal(g["c"].numpy(), -p)


def test_bytes_written_counts_before_compression():
    buf = io.BytesIO()
    w = RecordWriter(buf, compress=True)
    w.write(b"z" * 1000)
    w.close()
    assert w.bytes_written == 1016
    assert len(gzip.decompress(buf.getvalue())) == 1016


@pytest.mark.parametrize("flip", [0, 9, 20])
def test_corruption_is_detected(flip):
    data = bytearray(frame(b"payload-bytes"))
    data[flip] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt|truncated"):
        list(read_records(bytes(data), compressed=False))

"""TFRecord files of ``tf.train.Example`` records, written and read without tensorflow.

A TFRecord file is a sequence of records, each framed as

    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

(little-endian), optionally GZIP-compressed as a whole. An ``Example`` is the
protobuf ``Example{features: Features{feature: map<string, Feature>}}``; Earth
Engine writes every band as a ``FloatList`` (packed float32). Only what image
exports need is encoded here: float lists (and, for reading back, int64 and
bytes lists are decoded too).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator, Mapping
from typing import BinaryIO

import google_crc32c
import numpy as np

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: crc32c rotated right by 15 bits plus a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record as it is stored in a TFRecord file."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc32c(length)) + record + struct.pack("<I", masked_crc32c(record))


# -- protobuf wire format -------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def encode_example(features: Mapping[str, np.ndarray]) -> bytes:
    """A serialized ``tf.train.Example`` with one FloatList feature per entry, values flattened row-major."""
    entries = []
    for name, values in features.items():
        packed = np.ascontiguousarray(values, dtype="<f4").tobytes()
        float_list = _field(1, packed)  # FloatList.value, packed
        feature = _field(2, float_list)  # Feature.float_list
        entry = _field(1, name.encode()) + _field(2, feature)  # map entry: key, value
        entries.append(_field(1, entry))  # Features.feature
    return _field(1, b"".join(entries))  # Example.features


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            size, pos = _read_varint(buf, pos)
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def decode_example(data: bytes) -> dict[str, np.ndarray | list[bytes]]:
    """The features of a serialized ``tf.train.Example`` (float and int64 lists as arrays)."""
    out: dict[str, np.ndarray | list[bytes]] = {}
    for _, _, features in _fields(data):
        for _, _, entry in _fields(features):
            name, value = "", b""
            for num, _, v in _fields(entry):
                if num == 1:
                    name = v.decode()
                elif num == 2:
                    value = v
            for kind, _, lst in _fields(value):
                if kind == 2:  # FloatList
                    parts = [np.frombuffer(v, "<f4") for _, _, v in _fields(lst)]  # packed or not
                    out[name] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
                elif kind == 3:  # Int64List
                    vals: list[int] = []
                    for _, w, v in _fields(lst):
                        if w == 2:
                            p = 0
                            while p < len(v):
                                x, p = _read_varint(v, p)
                                vals.append(x - (1 << 64) if x >= 1 << 63 else x)
                        else:
                            vals.append(v - (1 << 64) if v >= 1 << 63 else v)
                    out[name] = np.array(vals, dtype=np.int64)
                elif kind == 1:  # BytesList
                    out[name] = [v for _, _, v in _fields(lst)]
    return out


# -- files ----------------------------------------------------------------------------------


class RecordWriter:
    """Writes framed records to a binary file object, GZIP-compressed when ``compress``."""

    def __init__(self, fh: BinaryIO, compress: bool = False):
        self._raw = fh
        self._out: BinaryIO = gzip.GzipFile(fileobj=fh, mode="wb") if compress else fh
        self.bytes_written = 0  # before compression

    def write(self, record: bytes) -> None:
        framed = frame(record)
        self._out.write(framed)
        self.bytes_written += len(framed)

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()
        self._raw.flush()


def read_records(data: bytes, compressed: bool | None = None) -> Iterator[bytes]:
    """The records of a TFRecord file's bytes, checking both checksums (GZIP detected when ``None``)."""
    if compressed or (compressed is None and data[:2] == b"\x1f\x8b"):
        data = gzip.decompress(data)
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError("truncated TFRecord header")
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if crc != masked_crc32c(header):
            raise ValueError("corrupt TFRecord length checksum")
        record = data[pos + 12 : pos + 12 + length]
        (dcrc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        if len(record) != length or dcrc != masked_crc32c(record):
            raise ValueError("corrupt TFRecord data checksum")
        yield record
        pos += 16 + length

import json
import struct

import numpy as np
import pytest

from bertdetr.bert.data import records
from bertdetr.bert.data.records import (
    RecordError,
    crc32c,
    encode_varint,
    frame_record,
    iter_examples,
    masked_crc32c,
    parse_example,
    read_records,
    serialize_example,
    write_record,
)
from bertdetr.errors import BertDetrError


def _decoded(path):
    return [{k: v.tolist() for k, v in ex.items()} for ex in iter_examples(path)]


@pytest.mark.parametrize("name", ["default", "wwm"])
def test_reads_googles_tensorflow_files(data_dir, name):
    """Google's TFRecordWriter output decodes to exactly Google's own JSONL dump."""
    golden = [json.loads(line) for line in (data_dir / "bert" / f"sample-{name}.jsonl").open()]
    got = _decoded(data_dir / "bert" / f"sample-{name}.tfrecord")
    assert got == golden
    # dtypes as TensorFlow parses them
    ex = next(iter_examples(data_dir / "bert" / f"sample-{name}.tfrecord"))
    assert ex["input_ids"].dtype == np.int64 and ex["masked_lm_weights"].dtype == np.float32


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0
    # TensorFlow's masking: rotate right 15, add 0xa282ead8
    crc = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_table_crc_matches_library(monkeypatch):
    """The fallback without google-crc32c computes the same CRCs."""
    samples = (b"", b"a", b"123456789", bytes(range(256)) * 3)
    expected = [crc32c(data) for data in samples]
    monkeypatch.setattr(records, "_gcrc", None)
    assert [crc32c(data) for data in samples] == expected


def test_googles_records_frame_like_ours(data_dir):
    """Re-framing Google's record payloads gives Google's file byte for byte."""
    path = data_dir / "bert" / "sample-default.tfrecord"
    assert b"".join(frame_record(r) for r in read_records(path)) == path.read_bytes()


def test_example_round_trip(tmp_path):
    features = {
        "ints": [0, 1, 127, 128, 16383, 16384, 2**40, -1, -(2**63), 2**63 - 1],
        "floats": np.array([1.0, 0.0, -2.5, 3.25], dtype=np.float32),
        "bytes": [b"", b"abc", bytes(range(256))],
        "empty": [],
        "one": [7],
    }
    data = serialize_example(features)
    assert serialize_example(dict(reversed(list(features.items())))) == data  # sorted: deterministic
    got = parse_example(data)
    assert got["ints"].tolist() == features["ints"]
    assert got["floats"].tolist() == [1.0, 0.0, -2.5, 3.25]
    assert got["bytes"] == features["bytes"]
    assert got["empty"].tolist() == [] and got["one"].tolist() == [7]
    path = tmp_path / "r.tfrecord"
    with open(path, "wb") as f:
        write_record(f, data)
        write_record(f, serialize_example({"x": [1]}))
    first, second = iter_examples(path)
    assert first["ints"].tolist() == features["ints"] and second["x"].tolist() == [1]
    assert len(list(read_records(path))) == 2


def test_accepts_unpacked_encodings():
    """proto2-style unpacked repeated fields (TensorFlow's parser accepts them too)."""
    key = b"f"
    ints = b"".join(b"\x08" + encode_varint(v) for v in (3, 300))  # Int64List.value, wire type 0
    floats = b"".join(b"\x0d" + struct.pack("<f", v) for v in (0.5, 2.0))  # FloatList, wire type 5

    def example(name, feature):
        entry = b"\x0a" + encode_varint(len(name)) + name + b"\x12" + encode_varint(len(feature)) + feature
        body = b"\x0a" + encode_varint(len(entry)) + entry
        return b"\x0a" + encode_varint(len(body)) + body

    got = parse_example(example(key, b"\x1a" + encode_varint(len(ints)) + ints))
    assert got["f"].tolist() == [3, 300]
    got = parse_example(example(key, b"\x12" + encode_varint(len(floats)) + floats))
    assert got["f"].tolist() == [0.5, 2.0]


def _two_records(tmp_path):
    path = tmp_path / "r.tfrecord"
    first = frame_record(serialize_example({"a": [1, 2, 3]}))
    second = frame_record(serialize_example({"a": [4, 5, 6]}))
    path.write_bytes(first + second)
    return path, len(first)


def test_corrupt_data_names_file_and_offset(tmp_path):
    path, offset = _two_records(tmp_path)
    data = bytearray(path.read_bytes())
    data[offset + 14] ^= 0x01  # inside the second record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=rf"{path}.*data CRC.*offset {offset}"):
        list(iter_examples(path))
    assert len(list(read_records(path, check_crc=False))) == 2


def test_corrupt_length_names_offset(tmp_path):
    path, offset = _two_records(tmp_path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=rf"length CRC.*offset {offset}"):
        list(read_records(path))


@pytest.mark.parametrize("cut", [3, 13, 20])
def test_truncated_file_names_offset(tmp_path, cut):
    path, offset = _two_records(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:offset + cut])
    with pytest.raises(RecordError, match=rf"{path}: truncated record.* offset {offset}"):
        list(read_records(path))
    assert issubclass(RecordError, BertDetrError)


def test_not_an_example(tmp_path):
    path = tmp_path / "r.tfrecord"
    path.write_bytes(frame_record(b"\x0a\x05ab"))  # length runs past the message
    with pytest.raises(RecordError, match="offset 0 is not a tf.train.Example"):
        list(iter_examples(path))


def test_missing_file(tmp_path):
    with pytest.raises(BertDetrError, match="cannot read"):
        list(read_records(tmp_path / "nope.tfrecord"))

"""Records decoded a batch at a time (``bertdetr.bert.data.batches.parse_examples``) against the
readable one-record decoder (``records.parse_example``): Google's own records, ours, other layouts
and bad records."""

import numpy as np
import pytest

from bertdetr.bert.data.batches import parse_examples
from bertdetr.bert.data.records import (
    RecordError,
    _len_delimited,
    encode_varint,
    parse_example,
    read_records,
    serialize_example,
)
from tests.conftest import DATA

PRETRAINING = {"input_ids": 128, "input_mask": 128, "segment_ids": 128, "masked_lm_positions": 20,
               "masked_lm_ids": 20, "masked_lm_weights": 20, "next_sentence_labels": 1}


def _reference(records, lengths):
    examples = [parse_example(r) for r in records]
    return {name: np.stack([np.asarray(e[name]).reshape(-1) for e in examples]) for name in lengths}


def _assert_equal(got, expected):
    assert set(got) == set(expected)
    for name in expected:
        assert got[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("name", ["sample-default", "sample-wwm"])
def test_googles_records_decode_as_one_by_one(name):
    """Google's files (TensorFlow's writer: map entries in hash order) in batches of every size."""
    records = list(read_records(DATA / "bert" / f"{name}.tfrecord"))
    first = parse_example(records[0])
    lengths = {name: len(first[name]) for name in PRETRAINING}
    for size in (1, 7, 64, len(records)):
        for start in range(0, len(records), size):
            batch = records[start:start + size]
            _assert_equal(parse_examples(batch, lengths), _reference(batch, lengths))


def test_values_of_every_size_and_sign():
    """1- to 10-byte varints (int64 as protobuf writes negatives), floats, empty lists."""
    rng = np.random.default_rng(0)
    values = [0, 1, 127, 128, 16383, 16384, 2**31, 2**62, -1, -2**63, 2**63 - 1]
    records = [serialize_example({"a": rng.choice(values, 5).tolist(), "f": rng.random(3).astype(np.float32),
                                  "e": np.zeros(0, np.int64)}) for _ in range(9)]
    lengths = {"a": 5, "f": 3, "e": 0}
    got = parse_examples(records, lengths)
    expected = _reference(records, {"a": 5, "f": 3})
    _assert_equal({k: got[k] for k in ("a", "f")}, expected)
    assert got["e"].shape == (9, 0)


def _unpacked(name: str, ints: list[int]) -> bytes:
    """A record whose Int64List values are written one by one (legal protobuf; no writer here does it)."""
    inner = b"".join(b"\x08" + encode_varint(v) for v in ints)
    feature = _len_delimited(0x1A, inner)
    entry = _len_delimited(0x0A, name.encode()) + _len_delimited(0x12, feature)
    return _len_delimited(0x0A, _len_delimited(0x0A, entry))


def test_other_layouts_take_the_one_by_one_path():
    records = [_unpacked("a", [1, 2, 300]), serialize_example({"a": [4, 5, 6]})]
    got = parse_examples(records, {"a": 3})
    np.testing.assert_array_equal(got["a"], [[1, 2, 300], [4, 5, 6]])


def test_other_features_are_passed_over():
    records = [serialize_example({"a": [1, 2], "text": [b"x", b"yz"], "b": [0.5]})] * 3
    got = parse_examples(records, {"b": 1, "a": 2})
    np.testing.assert_array_equal(got["a"], [[1, 2]] * 3)
    assert got["b"].dtype == np.float32 and got["b"].tolist() == [[0.5]] * 3


@pytest.mark.parametrize("records,lengths,message", [
    ([serialize_example({"a": [1, 2]})], {"b": 2}, "lacks the feature 'b'"),
    ([serialize_example({"a": [1, 2]}), serialize_example({"a": [1, 2, 3]})], {"a": 2},
     "'a' has 3 values in record 1 of the batch, expected 2"),
    ([serialize_example({"f": [0.5, 1.5]})], {"f": 3}, "other than 3 float values"),
    ([serialize_example({"a": [1, 2]})[:-1]], {"a": 2}, "not a tf.train.Example"),
    ([serialize_example({"a": [1]}), serialize_example({"a": [1.0]})], {"a": 1}, "Int64List in some records"),
    ([b"\x0a\x03\x0a\x01"], {"a": 1}, "not a tf.train.Example"),
])
def test_bad_records_are_record_errors(records, lengths, message):
    with pytest.raises(RecordError, match=message):
        parse_examples(records, lengths)


def test_no_records():
    assert parse_examples([], {"a": 4})["a"].shape == (0, 4)

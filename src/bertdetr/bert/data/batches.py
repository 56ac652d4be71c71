"""``tf.train.Example`` records decoded a batch at a time: what the training input pipelines read.

``parse_example`` (``records``) decodes one record into Python lists, a call per value; a step of
64 pretraining records then costs as long as a compiled GPU step. Here a batch of records with
fixed-length features (TensorFlow's ``FixedLenFeature``, which every record of ``make-data`` and of
Google's scripts has) is decoded at once: one walk over each record's few protobuf fields finds
where each feature's packed values lie, then every feature's values of the whole batch are decoded
in a handful of numpy operations (the varints of all records together). Records of another layout
(values written unpacked, which protobuf allows and no writer here or at Google uses) are decoded
by ``parse_example``, the readable reference this equals (tested on both layouts).

Dimension letters: N records, L a feature's fixed length.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from bertdetr.bert.data.records import RecordError, parse_example


class _Unpacked(Exception):
    """A record whose layout the fast walk does not take (decoded by ``parse_example`` instead)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:  # nearly every length in a record
        return b, pos + 1
    result, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = buf[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 63:
            raise RecordError("a varint longer than 10 bytes")


def _feature_payloads(data: bytes, base: int, found: dict) -> None:
    """One serialized Example: for each feature, appends (kind, start, stop) of its packed values
    to ``found[name]`` (offsets + ``base``; kind 3 Int64List, 2 FloatList). Raises ``_Unpacked``
    for any field this walk does not expect, ``IndexError`` where the record ends too soon.

    Every length is read inline when it is one byte (``_varint`` otherwise): this walk is most of
    the pipeline's time per record."""
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] != 0x0A:  # Example.features (field 1, length-delimited), nothing else
            raise _Unpacked
        n, pos = _varint(data, pos + 1)
        features_end = pos + n
        if features_end > end:
            raise RecordError("it ends inside its features")
        while pos < features_end:
            if data[pos] != 0x0A:  # Features.feature map entry
                raise _Unpacked
            n = data[pos + 1]
            n, pos = (n, pos + 2) if n < 0x80 else _varint(data, pos + 1)
            entry_end = pos + n
            if entry_end > features_end:
                raise RecordError("a map entry runs past its message")
            # the key (field 1), then the Feature (field 2), as every writer orders them
            if data[pos] != 0x0A:
                raise _Unpacked
            n = data[pos + 1]
            n, pos = (n, pos + 2) if n < 0x80 else _varint(data, pos + 1)
            name = data[pos:pos + n]
            pos += n
            if data[pos] != 0x12:
                raise _Unpacked
            n = data[pos + 1]
            n, pos = (n, pos + 2) if n < 0x80 else _varint(data, pos + 1)
            if pos + n != entry_end:
                raise _Unpacked
            found.setdefault(name, []).append(_packed_list(data, pos, entry_end, base))
            pos = entry_end
        if pos != features_end:
            raise RecordError("a map entry runs past its message")


def _packed_list(data: bytes, pos: int, end: int, base: int) -> tuple[int, int, int]:
    """The Feature at ``data[pos:end]``: (kind, start, stop) of its list's packed values."""
    if pos == end:  # a Feature with no kind set: an empty list
        return 3, base + pos, base + pos
    tag = data[pos]
    if tag not in (0x12, 0x1A):  # float_list, int64_list (a BytesList is not a fixed-length number)
        raise _Unpacked
    n = data[pos + 1]
    n, pos = (n, pos + 2) if n < 0x80 else _varint(data, pos + 1)
    if pos + n != end:
        raise _Unpacked
    if n == 0:
        return tag >> 3, base + pos, base + pos
    if data[pos] != 0x0A:  # packed values (field 1, length-delimited); unpacked ones go the slow way
        raise _Unpacked
    k = data[pos + 1]
    k, pos = (k, pos + 2) if k < 0x80 else _varint(data, pos + 1)
    if pos + k != end:
        raise _Unpacked
    return tag >> 3, base + pos, base + pos + k


def _decode_varints(buf: np.ndarray, bounds: np.ndarray, length: int, name: str) -> np.ndarray:
    """The packed int64 varints of N records' slices of ``buf`` (``bounds`` [N+1] byte offsets) ->
    [N, L], signed as protobuf's int64, each record's count checked to be ``length``."""
    if buf.size == 0:
        if length:
            raise RecordError(f"feature {name!r} has 0 values, expected {length}")
        return np.zeros((len(bounds) - 1, 0), np.int64)
    last = buf >= 0x80  # continuation bit
    ends = np.flatnonzero(~last)
    # every record's slice must end a varint, and hold ``length`` of them
    slice_ends = bounds[1:][bounds[1:] > bounds[:-1]] - 1
    if last[slice_ends].any():
        raise RecordError(f"feature {name!r}: a truncated varint")
    counts = np.diff(np.searchsorted(ends, bounds, side="left"))
    if (counts != length).any():
        bad = int(np.flatnonzero(counts != length)[0])
        raise RecordError(f"feature {name!r} has {int(counts[bad])} values in record {bad} of the batch, "
                          f"expected {length}")
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    sizes = ends - starts + 1
    if sizes.max() > 10:
        raise RecordError(f"feature {name!r}: a varint longer than 10 bytes")
    shift = (np.arange(buf.size) - np.repeat(starts, sizes)).astype(np.uint64) * np.uint64(7)
    values = np.add.reduceat((buf & 0x7F).astype(np.uint64) << shift, starts)
    return values.view(np.int64).reshape(-1, length)  # two's complement: int64 as protobuf writes it


def parse_examples(records: Sequence[bytes], lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    """N serialized ``tf.train.Example`` records -> for each feature of ``lengths`` (name -> L, its
    fixed length), its values [N, L]: int64 for an ``Int64List``, float32 for a ``FloatList``.
    Other features of the records are passed over. Raises ``RecordError`` for a record that lacks
    a feature, holds another number of values, or is not a ``tf.train.Example``."""
    if not records:
        return {name: np.zeros((0, n), np.int64) for name, n in lengths.items()}
    found: dict[bytes, list] = {}
    base = 0
    try:
        for data in records:
            _feature_payloads(data, base, found)
            base += len(data)
    except _Unpacked:
        return _parse_one_by_one(records, lengths)
    except (IndexError, RecordError) as e:
        raise RecordError(f"a record is not a tf.train.Example ({e or 'it ends too soon'})") from None
    if any(len(items) > len(records) for items in found.values()):
        return _parse_one_by_one(records, lengths)  # a feature twice in a record: the last one counts
    buf = np.frombuffer(b"".join(records), np.uint8)
    out = {}
    for name, length in lengths.items():
        items = found.get(name.encode("utf-8"))
        if items is None or len(items) != len(records):
            raise RecordError(f"a record lacks the feature {name!r}")
        kinds = {kind for kind, _, _ in items}
        spans = np.array([(a, b) for _, a, b in items], dtype=np.int64)
        sizes = spans[:, 1] - spans[:, 0]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        # the bytes of every record's values, one after the other: gathered in one indexing
        values = buf[np.arange(bounds[-1]) + np.repeat(spans[:, 0] - bounds[:-1], sizes)]
        if kinds == {3}:
            out[name] = _decode_varints(values, bounds, length, name)
        elif kinds == {2}:
            if (sizes != 4 * length).any():
                raise RecordError(f"feature {name!r}: records hold other than {length} float values")
            out[name] = values.view("<f4").astype(np.float32).reshape(-1, length)
        else:
            raise RecordError(f"feature {name!r} is an Int64List in some records and a FloatList in others")
    return out


def _parse_one_by_one(records: Sequence[bytes], lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    """``parse_examples`` through ``parse_example``, a record at a time (other layouts)."""
    examples = []
    for data in records:
        try:
            examples.append(parse_example(data))
        except (RecordError, UnicodeDecodeError, IndexError) as e:
            raise RecordError(f"a record is not a tf.train.Example: {e}") from None
    out = {}
    for name, length in lengths.items():
        rows = []
        for example in examples:
            if name not in example:
                raise RecordError(f"a record lacks the feature {name!r}")
            values = np.asarray(example[name])
            if values.size != length:
                raise RecordError(f"feature {name!r} has {values.size} values in a record, expected {length}")
            rows.append(values)
        out[name] = np.stack(rows) if rows else np.zeros((0, length))
    return out

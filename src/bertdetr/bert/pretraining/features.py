"""The pretraining records of ``make-data``, fast: ``ExampleEncoder`` frames a ``TrainingInstance``
as the TFRecord of Google's ``write_instance_to_example_files``.

Byte for byte what ``bertdetr.bert.data.records.serialize_example`` and ``frame_record`` make of
the same features (a test checks it), with everything that depends only on a length computed
once. The feature names are ``records.PRETRAINING_FEATURES``. An instance is any object with
``TrainingInstance``'s fields (``create_pretraining_data``, which calls this module).
"""

from __future__ import annotations

import functools
from typing import Sequence

from bertdetr.bert.data.records import (
    PRETRAINING_FEATURES,
    encode_varint,
    join_varints,
    record_footer,
    record_header,
)

try:  # the ids' varints in C (setup.py builds it: pip install, or python setup.py build_ext --inplace)
    from bertdetr.bert.pretraining import _speedups as _compiled
except ImportError:  # pragma: no cover - the pure-Python path writes the same bytes
    _compiled = None


class ExampleEncoder:
    """The ``tf.train.Example`` of a ``TrainingInstance``, as Google's
    ``write_instance_to_example_files`` builds it, framed as a TFRecord.

    Google's features: ``input_ids`` (zero-padded to ``max_seq_length``), ``input_mask`` (1 over
    the tokens, 0 over the padding), ``segment_ids`` (0 over [CLS] A [SEP], 1 over B [SEP], 0 over
    the padding), ``masked_lm_positions`` and ``masked_lm_ids`` (zero-padded to
    ``max_predictions_per_seq``), ``masked_lm_weights`` (float 1.0 a prediction, 0.0 the
    padding), ``next_sentence_labels`` (1 when B is a random next); written in sorted name order,
    so the bytes equal ``serialize_example`` of the same features (a test checks it).

    Everything that depends only on a length is precomputed: the headers of each feature for
    each payload length, the ``input_mask`` and ``masked_lm_weights`` features for each count,
    the record header with its CRC for each record length, the varint bytes of every id. Per
    record, only the id payloads are encoded (``_speedups.varints``, or ``bytes.join`` over the
    table without the compiled module), the pieces joined and the data CRC computed. (Encoding
    the ids of a batch with numpy instead measured twice as slow as the table: its fancy
    indexing costs more than ``bytes.join``.)
    """

    _NAMES = tuple(sorted(PRETRAINING_FEATURES))  # the order serialize_example writes them in

    def __init__(self, max_seq_length: int, max_predictions_per_seq: int, vocab_size: int,
                 next_sentence: bool = True):
        self.max_seq_length = L = max_seq_length
        self.max_predictions = P = max_predictions_per_seq
        self._varints = [encode_varint(i) for i in range(max(vocab_size, 5 * L + 1, 1 << 14))]
        self._keys = {name: b"\x0a" + encode_varint(len(name)) + name.encode() + b"\x12"
                      for name in self._NAMES}
        # Feature headers by payload length: ids take 1 to 5 bytes (uint32 varints).
        self._ids_headers = [self._header("input_ids", n) for n in range(5 * L + 1)]
        self._masked_ids_headers = [self._header("masked_lm_ids", n) for n in range(5 * P + 1)]
        self._positions_headers = [self._header("masked_lm_positions", n) for n in range(5 * P + 1)]
        self._segment_header = self._header("segment_ids", L)
        self._mask_items = [self._header("input_mask", L) + b"\x01" * n + b"\x00" * (L - n)
                            for n in range(L + 1)]
        self._weight_items = [self._header("masked_lm_weights", 4 * P, b"\x12")
                              + b"\x00\x00\x80\x3f" * m + b"\x00\x00\x00\x00" * (P - m)
                              for m in range(P + 1)]
        # without the next-sentence task (make-data --no-next-sentence) the feature is left out
        self._nsp_items = [self._header("next_sentence_labels", 1) + b"\x00",
                           self._header("next_sentence_labels", 1) + b"\x01"] if next_sentence else [b"", b""]
        self._zeros = [b"\x00" * n for n in range(max(L, P) + 1)]
        self._ones = [b"\x01" * n for n in range(L + 1)]
        self._record_headers: dict[int, bytes] = {}

    def _header(self, name: str, n: int, kind: bytes = b"\x1a") -> bytes:
        """Bytes of a map entry for feature ``name`` up to its ``n``-byte packed payload."""
        v = encode_varint
        inner = 1 + len(v(n)) + n  # Int64List/FloatList {1: packed values}
        feature = 1 + len(v(inner)) + inner  # Feature {3: int64_list} or {2: float_list}
        entry = len(self._keys[name]) + len(v(feature)) + feature  # {1: key, 2: feature}
        return b"\x0a" + v(entry) + self._keys[name] + v(feature) + kind + v(inner) + b"\x0a" + v(n)

    def encode(self, inst) -> bytes:
        """The serialized ``tf.train.Example`` of one instance (not framed)."""
        return self._examples([inst])[0]

    def records(self, instances: Sequence) -> list[bytes]:
        """The framed TFRecords of ``instances``."""
        out = []
        head_cache = self._record_headers
        for data in self._examples(instances):
            n = len(data)
            head = head_cache.get(n)
            if head is None:
                head = head_cache[n] = record_header(n)
            out.append(head + data + record_footer(data))
        return out

    def _examples(self, instances: Sequence) -> list[bytes]:
        L, P = self.max_seq_length, self.max_predictions
        V = self._varints
        zeros, ones = self._zeros, self._ones
        ids_h, mids_h, pos_h = self._ids_headers, self._masked_ids_headers, self._positions_headers
        mask_items, weight_items, nsp_items = self._mask_items, self._weight_items, self._nsp_items
        segment_header = self._segment_header
        small_positions = L <= 128  # every position is a one-byte varint: the byte itself
        if _compiled is not None:
            varints = _compiled.varints
        else:
            varints = functools.partial(join_varints, V)
        examples = []
        for inst in instances:
            num_tokens = len(inst.input_ids)
            num_pad = L - num_tokens
            m = len(inst.masked_lm_positions)
            input_ids = varints(inst.input_ids)
            masked_ids = varints(inst.masked_lm_ids)
            if small_positions:
                positions = bytes(inst.masked_lm_positions)
            else:
                positions = varints(inst.masked_lm_positions)
            features = b"".join((
                ids_h[len(input_ids) + num_pad], input_ids, zeros[num_pad],
                mask_items[num_tokens],
                mids_h[len(masked_ids) + P - m], masked_ids, zeros[P - m],
                pos_h[len(positions) + P - m], positions, zeros[P - m],
                weight_items[m],
                nsp_items[1 if inst.is_random_next else 0],
                segment_header, zeros[inst.num_a + 2], ones[num_tokens - inst.num_a - 2], zeros[num_pad],
            ))
            n = len(features)
            examples.append(b"\x0a" + (V[n] if n < len(V) else encode_varint(n)) + features)
        return examples

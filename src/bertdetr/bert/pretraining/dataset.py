"""Streaming the pretraining TFRecords of ``make-data`` into batches, resumable to the exact batch.

Like Google's ``run_pretraining.py`` input_fn (shuffle the files, interleave, shuffle a buffer),
but deterministic: the batches depend only on the files, the seed, the batch size and the number
of readers, so a resumed run sees exactly the batches an uninterrupted run would have seen.

Readers: a run has ``world_size`` processes, each with ``num_workers`` DataLoader workers (at
least one reader per process); reader ``s = rank * W + worker`` of the ``S`` readers reads
- files ``s, s + S, s + 2S, ...`` of the epoch's shuffled file list, when there are at least S
  files (each rank reads its own files);
- otherwise every file, keeping records ``s, s + S, ...`` of the epoch's record sequence.
Each reader shuffles through a buffer of raw records (parsing only what it yields) and yields
whole batches; DataLoader hands out worker batches round-robin, so batch ``n`` of a rank comes from
its worker ``n % W``. The stream repeats over epochs (the file order reshuffled each epoch);
batches run on across epoch boundaries.

Batch contract (B = batch size, T = max_seq_length, P = max_predictions_per_seq): int64
``input_ids``, ``input_mask``, ``segment_ids`` [B,T]; ``masked_lm_positions``, ``masked_lm_ids``
[B,P]; float32 ``masked_lm_weights`` [B,P]; int64 ``next_sentence_labels`` [B].

Decoding: the records of a batch are decoded together (``bertdetr.bert.data.batches.parse_examples``:
one walk over each record's fields, then every feature's values of the batch in a few numpy
operations), not one Python call per value.

Values: given the model's config, every batch is checked here, on the host, as it is made (every id
inside its table, positions inside the sequence, labels 0/1): the model's forward checks only
shapes, since reading values there would be a device sync every step (see ``bertdetr.bert.model``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from bertdetr.bert.model import BertConfig, check_pretraining_features
from bertdetr.bert.data.batches import parse_examples
from bertdetr.bert.data.records import PRETRAINING_FEATURES, RecordError, iter_examples, read_records
from bertdetr.errors import BertDetrError

INT_FEATURES = tuple(name for name in PRETRAINING_FEATURES if name != "masked_lm_weights")


@dataclass(frozen=True)
class RecordShape:
    """What one record holds, read from the first record of the data."""

    max_seq_length: int
    max_predictions_per_seq: int


def inspect_records(files: list[str]) -> RecordShape:
    """Reads the first record, checks it has every pretraining feature, and returns its lengths."""
    for path in files:
        for example in iter_examples(path):
            missing = [name for name in PRETRAINING_FEATURES if name not in example]
            if missing:
                raise BertDetrError(f"{path}: records lack the pretraining feature(s) {', '.join(missing)}; "
                                    f"is this a file written by `bertdetr bert make-data`?")
            return RecordShape(len(example["input_ids"]), len(example["masked_lm_positions"]))
    raise BertDetrError(f"no records in {', '.join(files)}")


def decode_batch(records: list[bytes], shape: RecordShape, files: list[str]) -> dict[str, torch.Tensor]:
    """The batch contract's tensors (module doc) of serialized pretraining records, decoded
    together; a record of another shape or without a feature is a ``BertDetrError`` naming the files."""
    T, P = shape.max_seq_length, shape.max_predictions_per_seq
    lengths = {name: P for name in PRETRAINING_FEATURES}
    lengths.update(input_ids=T, input_mask=T, segment_ids=T, next_sentence_labels=1)
    try:
        arrays = parse_examples(records, lengths)
    except RecordError as e:
        raise BertDetrError(f"records of {_where(files)}: {e} (the first record has max_seq_length {T}, "
                            f"max_predictions_per_seq {P}: mixed data?)") from None
    batch = {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for name, a in arrays.items()
             if name in INT_FEATURES}
    batch["next_sentence_labels"] = batch["next_sentence_labels"].reshape(-1)
    batch["masked_lm_weights"] = torch.from_numpy(np.ascontiguousarray(arrays["masked_lm_weights"], dtype=np.float32))
    return batch


def _where(files: list[str]) -> str:
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def check_batch(batch: dict[str, torch.Tensor], model_config: BertConfig | None,
                files: list[str]) -> dict[str, torch.Tensor]:
    """The batch, its values checked against the model (not when ``model_config`` is None); a bad
    one is a ``BertDetrError`` naming the value and the files it came from."""
    if model_config is None:
        return batch
    try:
        check_pretraining_features(model_config, batch)
    except BertDetrError as e:
        raise BertDetrError(f"records of {_where(files)}: {e}; data and model do not match (another vocabulary, "
                            f"max_seq_length or type_vocab_size?)") from None
    return batch


class PretrainingStream(torch.utils.data.IterableDataset):
    """Endless, deterministic batches of one rank (use with ``DataLoader(batch_size=None)``).

    ``skip_batches``: batches of this rank already consumed (on resume); each worker skips its own
    share of records without parsing them. ``model_config``: check each batch's values against it
    (``check_batch``).
    """

    def __init__(self, files: list[str], batch_size: int, seed: int, shape: RecordShape, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, shuffle_buffer: int = 1000,
                 skip_batches: int = 0, shuffle: bool = True, model_config: BertConfig | None = None):
        if not files:
            raise BertDetrError("no training files")
        self.files = list(files)
        self.batch_size = batch_size
        self.seed = seed
        self.shape = shape
        self.rank = rank
        self.world_size = world_size
        self.num_workers = max(1, num_workers)
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.skip_batches = skip_batches
        self.shuffle = shuffle
        self.model_config = model_config

    def _reader(self) -> int:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        return self.rank * self.num_workers + worker

    def _raw_records(self, reader: int) -> Iterator[bytes]:
        S = self.world_size * self.num_workers
        epoch = 0
        while True:
            order = list(self.files)
            if self.shuffle:
                random.Random(f"files-{self.seed}-{epoch}").shuffle(order)
            if len(order) >= S:
                for path in order[reader::S]:
                    yield from read_records(path)
            else:
                i = 0
                for path in order:
                    for data in read_records(path):
                        if i % S == reader:
                            yield data
                        i += 1
            epoch += 1

    def _shuffled(self, reader: int) -> Iterator[bytes]:
        records = self._raw_records(reader)
        if not self.shuffle_buffer:
            yield from records
            return
        rng = random.Random(f"buffer-{self.seed}-{reader}")
        buffer: list[bytes] = []
        for data in records:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(data)
                continue
            k = rng.randrange(len(buffer))
            yield buffer[k]
            buffer[k] = data

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        W = self.num_workers
        # Worker w produced this rank's batches w, w + W, ... before the resume point.
        mine = max(0, -(-(self.skip_batches - worker) // W))
        records = self._shuffled(self._reader())
        for _ in range(mine * self.batch_size):
            next(records)
        while True:
            raw = [next(records) for _ in range(self.batch_size)]
            yield check_batch(decode_batch(raw, self.shape, self.files), self.model_config, self.files)


def iter_eval_batches(files: list[str], batch_size: int,
                      model_config: BertConfig | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Every record of ``files`` once, in order, in batches (the last one may be smaller), each
    checked against ``model_config`` when given (``check_batch``)."""
    shape = inspect_records(files)
    raw: list[bytes] = []
    for path in files:
        for data in read_records(path):
            raw.append(data)
            if len(raw) == batch_size:
                yield check_batch(decode_batch(raw, shape, files), model_config, files)
                raw = []
    if raw:
        yield check_batch(decode_batch(raw, shape, files), model_config, files)

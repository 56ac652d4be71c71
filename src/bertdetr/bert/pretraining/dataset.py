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
[B,P]; float32 ``masked_lm_weights`` [B,P]; int64 ``next_sentence_labels`` [B] (not for records of
``make-data --no-next-sentence``). Records of ``--dynamic-masking`` are masked as they are decoded
(``roberta.DynamicMasking``, draws seeded by the reader and its batch number, so a resumed
run masks as an uninterrupted one).

Decoding: the records of a batch are decoded together (``bertdetr.bert.data.batches.parse_examples``:
one walk over each record's fields, then every feature's values of the batch in a few numpy
operations), not one Python call per value.

Values: given the model's config, every batch is checked here, on the host, as it is made (every id
inside its table, positions inside the sequence, labels 0/1): the model's forward checks only
shapes, since reading values there would be a device sync every step (see ``bertdetr.bert.model``).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from bertdetr.bert.model import BertConfig, check_pretraining_features
from bertdetr.bert.data.batches import parse_examples
from bertdetr.bert.data.records import PRETRAINING_FEATURES, RecordError, iter_examples, read_records
from bertdetr.bert.pretraining.roberta import DynamicMasking
from bertdetr.errors import BertDetrError

INT_FEATURES = tuple(name for name in PRETRAINING_FEATURES if name != "masked_lm_weights")


_MASKED = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")

_FINE_TUNING_FEATURES = {
    "is_real_example": "sentence classification (`bert classify`)",
    "label_ids": "token classification or multiple choice (`bert ner`, `bert multiple-choice`)",
    "unique_ids": "reading comprehension (`bert squad`)",
    "start_positions": "reading comprehension (`bert squad`)",
}
"""Features that fine-tuning records carry and pretraining records never do, with what wrote them
(most telling first): such records have input_ids, input_mask and segment_ids too and would
otherwise be taken for unmasked data and trained on silently."""


@dataclass(frozen=True)
class RecordShape:
    """What one record holds, read from the first record of the data."""

    max_seq_length: int
    max_predictions_per_seq: int
    """0 for records of ``--dynamic-masking`` (the trainer's masking sets it)."""
    next_sentence: bool = True
    """The records have ``next_sentence_labels`` (not ``make-data --no-next-sentence``)."""
    dynamic: bool = False
    """Unmasked records (``make-data --dynamic-masking``): the trainer masks each batch."""
    whole_words: bool = False
    """Dynamic records with ``word_continues`` (whole-word masking)."""


def inspect_records(files: list[str]) -> RecordShape:
    """Reads the first record, checks it has the pretraining features (Google's seven; without
    ``next_sentence_labels`` from ``--no-next-sentence``; without the masked-LM three, and perhaps
    with ``word_continues``, from ``--dynamic-masking``), and returns its lengths and kind."""
    for path in files:
        for example in iter_examples(path):
            _refuse_fine_tuning_features(path, example)
            required = ("input_ids", "input_mask", "segment_ids")
            masked = [name for name in _MASKED if name in example]
            missing = [name for name in required if name not in example]
            if missing or len(masked) not in (0, 3):
                lacking = missing + [name for name in _MASKED if name not in example and masked]
                raise BertDetrError(f"{path}: records lack the pretraining feature(s) {', '.join(lacking)}; "
                                    f"is this a file written by `bertdetr bert make-data`?")
            dynamic = not masked
            return RecordShape(len(example["input_ids"]), 0 if dynamic else len(example["masked_lm_positions"]),
                               "next_sentence_labels" in example, dynamic, dynamic and "word_continues" in example)
    raise BertDetrError(f"no records in {', '.join(files)}")


def _refuse_fine_tuning_features(path: str, example: dict) -> None:
    found = [name for name in _FINE_TUNING_FEATURES if name in example]
    if found:
        raise BertDetrError(f"{path}: not pretraining data: its records have {', '.join(found)}, the features of "
                            f"{_FINE_TUNING_FEATURES[found[0]]} fine-tuning; pretrain on files written by "
                            "`bertdetr bert make-data`")


def decode_batch(records: list[bytes], shape: RecordShape, files: list[str], masking: DynamicMasking | None = None,
                 rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """The batch contract's tensors (module doc) of serialized pretraining records, decoded
    together; a record of another shape or without a feature is a ``BertDetrError`` naming the files.
    Dynamic records are masked here (``masking.mask`` with ``rng``)."""
    T, P = shape.max_seq_length, shape.max_predictions_per_seq
    lengths = {"input_ids": T, "input_mask": T, "segment_ids": T}
    if shape.next_sentence:
        lengths["next_sentence_labels"] = 1
    if shape.dynamic:
        if shape.whole_words:
            lengths["word_continues"] = T
    else:
        lengths.update({name: P for name in _MASKED})
    try:
        arrays = parse_examples(records, lengths)
    except RecordError as e:
        raise BertDetrError(f"records of {_where(files)}: {e} (the first record has max_seq_length {T}, "
                            f"max_predictions_per_seq {P}: mixed data?)") from None
    if shape.dynamic:
        if masking is None:
            raise BertDetrError(f"records of {_where(files)} are unmasked (make-data --dynamic-masking): "
                                "they need the trainer's masking (its vocabulary)")
        arrays = {**arrays, **masking.mask({k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()}, rng)}
        arrays.pop("word_continues", None)
    batch = {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for name, a in arrays.items()
             if name in INT_FEATURES}
    if "next_sentence_labels" in batch:
        batch["next_sentence_labels"] = batch["next_sentence_labels"].reshape(-1)
    batch["masked_lm_weights"] = torch.from_numpy(np.ascontiguousarray(arrays["masked_lm_weights"], dtype=np.float32))
    return batch


def batch_rng(seed: int, reader: int, batch: int) -> np.random.Generator:
    """The draws of dynamic masking for batch ``batch`` of reader ``reader``: the same in a resumed
    run (its batches are counted the same way)."""
    return np.random.default_rng([seed, reader, batch])


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


def without_full_mask(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without ``input_mask`` when no sequence of it is padded: the model then attends
    without a mask, which lets ``scaled_dot_product_attention`` take its fastest kernel on a GPU
    (the same numbers: an all-ones mask masks nothing). Decided here, on the host, where the batch
    is made (the step would have to read the mask back from the device)."""
    if bool(batch["input_mask"].all()):
        batch = {k: v for k, v in batch.items() if k != "input_mask"}
    return batch


def packed_token_index(input_mask: torch.Tensor) -> torch.Tensor:
    """[B,T] (1 real token) -> [N] int64: the flat positions b*T + t of the real tokens, in order:
    what the model's unpadded layers take (``token_index``), made on the host so that the step
    never reads the token count back from the device."""
    return input_mask.reshape(-1).nonzero().squeeze(1)


def with_token_index(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``bert pretrain --unpad``: a padded batch with its ``token_index`` (one with no padding, and
    so no ``input_mask``, has nothing to drop)."""
    if "input_mask" in batch:
        batch = {**batch, "token_index": packed_token_index(batch["input_mask"])}
    return batch


class PretrainingStream(torch.utils.data.IterableDataset):
    """Endless, deterministic batches of one rank (use with ``DataLoader(batch_size=None)``).

    ``skip_batches``: batches of this rank already consumed (on resume); each worker skips its own
    share of records without parsing them. ``model_config``: check each batch's values against it
    (``check_batch``). ``unpad``: each padded batch with its ``token_index`` (``with_token_index``).
    """

    def __init__(self, files: list[str], batch_size: int, seed: int, shape: RecordShape, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, shuffle_buffer: int = 1000,
                 skip_batches: int = 0, shuffle: bool = True, model_config: BertConfig | None = None,
                 masking: DynamicMasking | None = None, unpad: bool = False):
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
        self.masking = masking
        self.unpad = unpad
        self._check_enough_records()

    def _check_enough_records(self) -> None:
        """Each reader (a worker of a rank) reads whole files, or with fewer files than readers
        every S-th record: fewer records than readers leave one with none, which would wait for its
        first batch for ever (a DataLoader worker spinning, deaf to SIGTERM). Refused here, before
        any work, from at most S records read."""
        readers = self.world_size * self.num_workers
        if len(self.files) >= readers:
            return
        found = sum(1 for _ in itertools.islice(
            itertools.chain.from_iterable(read_records(path, check_crc=False) for path in self.files), readers))
        if found < readers:
            fix = f"--num-workers {found // self.world_size}" if found >= self.world_size else "fewer processes"
            raise BertDetrError(
                f"{found} training record(s) in {_where(self.files)} for {readers} readers ({self.world_size} "
                f"process(es) x {self.num_workers} worker(s)), each of which reads records of its own: give "
                f"{fix}, or more data")

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
                if i <= reader:  # (refused up front: _check_enough_records; never a silent endless loop)
                    raise BertDetrError(f"reader {reader} of {S} has no records: {i} in {_where(self.files)}")
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
        reader = self._reader()
        records = self._shuffled(reader)
        for _ in range(mine * self.batch_size):
            next(records)
        n = mine  # this worker's batches so far: dynamic masking draws by it
        while True:
            raw = [next(records) for _ in range(self.batch_size)]
            rng = batch_rng(self.seed, reader, n) if self.shape.dynamic else None
            n += 1
            batch = without_full_mask(check_batch(decode_batch(raw, self.shape, self.files, self.masking, rng),
                                                  self.model_config, self.files))
            yield with_token_index(batch) if self.unpad else batch


_EVAL_READER = 1 << 30
"""``batch_rng``'s reader number of the evaluation batches (no training reader has it)."""


def iter_eval_batches(files: list[str], batch_size: int, model_config: BertConfig | None = None,
                      masking: DynamicMasking | None = None, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Every record of ``files`` once, in order, in batches (the last one may be smaller), each
    checked against ``model_config`` when given (``check_batch``). Dynamic records are masked the
    same way at every evaluation (``batch_rng(seed, ...)``)."""
    shape = inspect_records(files)
    raw: list[bytes] = []
    n = 0
    for path in files:
        for data in read_records(path):
            raw.append(data)
            if len(raw) == batch_size:
                rng = batch_rng(seed, _EVAL_READER, n) if shape.dynamic else None
                yield check_batch(decode_batch(raw, shape, files, masking, rng), model_config, files)
                raw, n = [], n + 1
    if raw:
        rng = batch_rng(seed, _EVAL_READER, n) if shape.dynamic else None
        yield check_batch(decode_batch(raw, shape, files, masking, rng), model_config, files)

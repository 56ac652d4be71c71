"""Pretraining data as Google's ``create_pretraining_data.py`` makes it: exact, streaming, fast.

For one input file and equal flags the records are Google's, record for record: the same
algorithm consuming the same ``random.Random(random_seed)`` stream in the same order — document
shuffle, per-document target length, NSP split point and random-next document, truncation from
the front or the back, candidate shuffle, whole-word grouping, 80/10/10 — then the same
``tf.train.Example`` features (``input_ids``, ``input_mask``, ``segment_ids``,
``masked_lm_positions``, ``masked_lm_ids``, ``masked_lm_weights``, ``next_sentence_labels``) with
Google's dtypes and padding, written round-robin over the output files.

What differs from Google's script, none of it visible in the records:

- **Token ids instead of token strings.** Documents are kept as lists of vocabulary ids; Google's
  string tests map onto ids exactly (see the comments at each one).
- **The random stream is drawn in C** when the optional compiled module
  ``bertdetr.bert._speedups`` is built (``pip install``, or ``python setup.py build_ext
  --inplace``): it continues the Mersenne Twister of the shard's ``random.Random`` from its state
  and hands the state back (``_draws_of``). Without it, the pure-Python path draws through
  ``getrandbits``/``random`` directly instead of through ``random.Random.shuffle``/``randint``
  (which cost a Python-level ``_randbelow`` call per draw). Either way every draw consumes exactly
  the 32-bit words CPython's methods would, the files are the same bytes, and ``rng`` is left in
  the state Google's run leaves it in. (Most draws are the candidate shuffle of each instance:
  ~160 rejection-sampled words, half of the run time as Python calls.)
- **Truncation is counted**, not done a token at a time (Google's ``del tokens[0]`` loop is
  quadratic: a 10 MB line would take hours), with all of its coin flips in one draw.
- **Shards.** Each input file is a shard processed on its own (Google's algorithm within the
  shard, as Google's README recommends sharding the input). Shard ``i`` of the sorted input list
  uses ``random.Random(random_seed + i)``, so a single input file uses ``random_seed`` itself and
  equals Google's run, and shard ``i`` equals Google's run on that file alone with
  ``--random_seed=random_seed+i``. (Google's run over several files is one pool: documents of all
  files shuffled together, and a file not ending in a blank line runs its last document on into
  the next file. We do not reproduce that; it is what keeps Google's memory unbounded.) Memory is
  bounded by one shard: its documents as id lists and its records as bytes (Google holds every
  document and every instance object of every input at once); ``workers`` shards run in parallel.
- **Serialized records** are built by hand (``bertdetr.bert.records``): features in sorted
  order, so the same seed gives the same bytes. The ids' varints are encoded in C when the
  compiled module is built.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import os
import queue as queue_mod
import random
import string
import struct
import sys
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Callable, Iterable, Optional, Sequence

from bertdetr.bert.records import encode_varint, frame_record, masked_crc32c
from bertdetr.errors import BertDetrError
from bertdetr.fileio import TextCheck, atomic_output, check_writable, expand_inputs

try:  # the shuffle and masking draws in C (setup.py builds it: pip install, or build_ext --inplace)
    from bertdetr.bert import _speedups as _compiled
except ImportError:  # pragma: no cover - the pure-Python path below makes the same draws
    _compiled = None

__all__ = [
    "PretrainingDataConfig",
    "TrainingInstance",
    "MakeDataSummary",
    "VocabIds",
    "shard_seed",
    "read_documents",
    "create_training_instances",
    "ExampleEncoder",
    "plan_outputs",
    "make_pretraining_data",
    "describe_example",
]


@dataclass
class PretrainingDataConfig:
    """Google's flags of ``create_pretraining_data.py`` (same defaults)."""

    max_seq_length: int = 128
    """Tokens per instance, [CLS] A [SEP] B [SEP], padded with 0 up to this length."""
    max_predictions_per_seq: int = 20
    """Most masked positions per instance; positions/ids/weights are padded to this length."""
    random_seed: int = 12345
    """Seed of the one ``random.Random`` stream of a shard (shard ``i`` uses ``random_seed + i``)."""
    dupe_factor: int = 10
    """Passes over the documents, each with different splits and masks."""
    masked_lm_prob: float = 0.15
    """Fraction of tokens to mask (``round(len(tokens) * masked_lm_prob)``, at least 1)."""
    short_seq_prob: float = 0.1
    """Probability that a document's target length is drawn from [2, max_seq_length - 3]."""
    do_whole_word_mask: bool = False
    """Mask every piece of a word together (``##`` pieces join the word before them)."""
    do_lower_case: bool = True
    """Lowercase and strip accents when tokenizing (uncased vocab)."""

    def __post_init__(self):
        for name in ("max_seq_length", "max_predictions_per_seq", "random_seed", "dupe_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise BertDetrError(f"{name} must be an integer, got {value!r}")
        if self.max_seq_length < 5:
            raise BertDetrError(
                f"max_seq_length {self.max_seq_length} is too small to hold [CLS] A [SEP] B [SEP] "
                "with at least one token in A and in B (needs at least 5)"
            )
        if self.max_predictions_per_seq < 1:
            raise BertDetrError(f"max_predictions_per_seq must be >= 1, got {self.max_predictions_per_seq}")
        if self.dupe_factor < 1:
            raise BertDetrError(f"dupe_factor must be >= 1, got {self.dupe_factor}")
        for name in ("masked_lm_prob", "short_seq_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise BertDetrError(f"{name} must be a number in [0, 1], got {value!r}")


def shard_seed(random_seed: int, index: int) -> int:
    """Seed of input shard ``index`` (its position in the sorted input list): ``random_seed + index``.

    Shard 0 — in particular the only shard of a one-file run — uses ``random_seed`` itself, so it
    equals Google's run; shard ``i`` equals Google's run on that file with
    ``--random_seed=random_seed+i``. (Python seeds MT19937 through ``init_by_array``, so
    neighbouring integer seeds give unrelated streams.)
    """
    return random_seed + index


class VocabIds:
    """The ids the algorithm needs from a vocabulary (``token -> id`` dict, ids in file order)."""

    def __init__(self, vocab: dict):
        missing = [t for t in ("[CLS]", "[SEP]", "[MASK]") if t not in vocab]
        if missing:
            raise BertDetrError(f"the vocab has no {', '.join(missing)} (needed for pretraining data)")
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.mask_id = vocab["[MASK]"]
        # Google draws random replacement words as vocab_words[rng.randint(0, len(vocab_words) - 1)]
        # with vocab_words = list(tokenizer.vocab.keys()), then converts them to ids: the id drawn
        # is list(vocab.values())[r]. (That is r itself for a vocab without duplicate lines; with
        # Google's load_vocab a duplicated token keeps its first position but its last id, and so
        # does this list. Special tokens and [unused*] can be drawn too, as in Google's.)
        self.size = len(vocab)
        self.word_ids = list(vocab.values())
        # WWM: Google tests token.startswith("##") on the token string.
        self.is_subword = bytearray(max(vocab.values()) + 1)
        for token, i in vocab.items():
            if token.startswith("##"):
                self.is_subword[i] = 1


class TrainingInstance:
    """One sentence pair (Google's ``TrainingInstance``, with ids instead of token strings).

    ``input_ids`` is ``[CLS] A [SEP] B [SEP]`` with the masks applied (unpadded); ``num_a`` is the
    length of A, so ``segment_ids`` is 0 over [CLS] A [SEP] and 1 over B [SEP].
    """

    __slots__ = ("input_ids", "num_a", "masked_lm_positions", "masked_lm_ids", "is_random_next")

    def __init__(self, input_ids, num_a, masked_lm_positions, masked_lm_ids, is_random_next):
        self.input_ids = input_ids
        self.num_a = num_a
        self.masked_lm_positions = masked_lm_positions
        self.masked_lm_ids = masked_lm_ids
        self.is_random_next = is_random_next

    @property
    def segment_ids(self) -> list[int]:
        return [0] * (self.num_a + 2) + [1] * (len(self.input_ids) - self.num_a - 2)

    def __repr__(self):
        return (f"TrainingInstance(input_ids={self.input_ids}, num_a={self.num_a}, "
                f"masked_lm_positions={self.masked_lm_positions}, masked_lm_ids={self.masked_lm_ids}, "
                f"is_random_next={self.is_random_next})")


# --- the random stream ------------------------------------------------------------------------
#
# CPython (3.10-3.13): random() uses two 32-bit words; randint(a, b) is a + _randbelow(b - a + 1);
# _randbelow(n) draws getrandbits(n.bit_length()) (one word each) until the value is below n;
# shuffle(x) swaps x[i] with x[_randbelow(i + 1)] for i from len(x) - 1 down to 1. The helpers
# below make exactly these calls on the C methods, without the Python-level wrappers.

def _randbelow_fn(rng: random.Random) -> Callable[[int], int]:
    getrandbits = rng.getrandbits

    def randbelow(n: int) -> int:
        k = n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    return randbelow


def _shuffle(x: list, rng: random.Random) -> None:
    """``rng.shuffle(x)``, same result and same words consumed.

    ``_randbelow(i + 1)`` draws ``getrandbits(k)``, k = (i + 1).bit_length(), until the value is
    <= i; we run the i of equal k as one inner loop, so k is computed once per power of two.
    """
    getrandbits = rng.getrandbits
    top = len(x) - 1
    k = (top + 1).bit_length()
    while k >= 2:
        low = max((1 << (k - 1)) - 1, 1)  # the smallest i with (i + 1).bit_length() == k
        for i in range(top, low - 1, -1):
            j = getrandbits(k)
            while j > i:
                j = getrandbits(k)
            x[i], x[j] = x[j], x[i]
        top = low - 1
        k -= 1


class _PythonDraws:
    """The draws of make-data, made on ``rng`` itself (the path without the compiled module).

    The same methods as ``bertdetr.bert._speedups.Stream``, with the same results and the same
    words consumed: ``random()``, ``randbelow(n)`` (``Random._randbelow``), ``shuffle(x)``,
    ``words(m)`` (``getrandbits(32 * m)`` as ``m`` little-endian 4-byte words), ``mask`` and
    ``masked_lm`` (below).
    """

    def __init__(self, rng: random.Random):
        self.random = rng.random
        self.randbelow = _randbelow_fn(rng)
        self.shuffle = functools.partial(_shuffle, rng=rng)
        self.words = lambda m: rng.getrandbits(32 * m).to_bytes(4 * m, "little")
        self._positions: list[int] = []

    def mask(self, tokens: list, chosen: list, mask_id: int, word_ids: list) -> tuple[list, list]:
        """The end of Google's ``create_masked_lm_predictions`` for the ``chosen`` positions
        (distinct, in the order chosen): returns the positions sorted (Google sorts its
        masked_lms by index) and the original tokens there; applies the 80/10/10 to ``tokens``."""
        positions = sorted(chosen)
        labels = list(map(tokens.__getitem__, positions))
        random_, randbelow = self.random, self.randbelow
        for index in chosen:
            if random_() < 0.8:  # 80%: [MASK]
                tokens[index] = mask_id
            elif random_() < 0.5:  # 10%: keep the original
                pass
            else:  # 10%: a random word, vocab_words[rng.randint(0, len(vocab_words) - 1)]
                tokens[index] = word_ids[randbelow(len(word_ids))]
        return positions, labels

    def masked_lm(self, tokens: list, len_a: int, num_to_predict: int, mask_id: int,
                  word_ids: list) -> tuple[list, list]:
        """Google's ``create_masked_lm_predictions`` without whole-word masking, for ``tokens``
        = [CLS] A [SEP] B [SEP] with ``len(A) == len_a``.

        Google collects candidates by testing each token string against "[CLS]"/"[SEP]"; the
        tokenizer never produces those (it splits "[" and "]" off as punctuation), so they are
        exactly positions 0, len_a + 1 and the last. Candidates are distinct, so Google's
        covered-indexes test never skips: the first ``num_to_predict`` of the shuffle are masked.
        """
        num_tokens = len(tokens)
        positions = self._positions
        if len(positions) < num_tokens:
            positions[:] = range(num_tokens)
        candidates = positions[1:len_a + 1] + positions[len_a + 2:num_tokens - 1]
        self.shuffle(candidates)  # rng.shuffle(cand_indexes)
        return self.mask(tokens, candidates[:num_to_predict], mask_id, word_ids)


@contextlib.contextmanager
def _draws_of(rng: random.Random):
    """The draws of ``rng``, in C when the compiled module is built.

    The compiled ``Stream`` continues ``rng``'s Mersenne Twister from its state and hands the state
    back when the block ends, so ``rng`` is then exactly where the pure-Python path leaves it. Do
    not draw from ``rng`` itself inside the block. A subclass of ``random.Random`` (which may
    override its methods) always takes the pure-Python path.
    """
    if _compiled is None or type(rng) is not random.Random:
        yield _PythonDraws(rng)
        return
    version, internal, gauss_next = rng.getstate()
    stream = _compiled.Stream(internal)
    try:
        yield stream
    finally:
        rng.setstate((version, stream.getstate(), gauss_next))


_pack_crc = struct.Struct("<I").pack

_SHORT_TRUNCATION = 8  # fewer pops than this: a loop of random() calls; more: one bulk draw
_LOW_BYTES = bytes(range(128))
_HIGH_BYTES = bytes(range(128, 256))


def _truncation(len_a: int, len_b: int, max_num_tokens: int, draws) -> tuple[int, int, int, int]:
    """Google's ``truncate_seq_pair`` as counts: tokens removed from (front of A, back of A,
    front of B, back of B).

    Google pops one token at a time from the longer list (B on a tie), from the front if
    ``rng.random() < 0.5`` else from the back — O(n^2) for a long line, since ``del x[0]``
    shifts the list. Which list each pop takes depends only on the lengths, so we count.
    """
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return 0, 0, 0, 0
    if excess < _SHORT_TRUNCATION:
        rand = draws.random
        af = ab = bf = bb = 0
        while len_a + len_b > max_num_tokens:
            if len_a > len_b:
                len_a -= 1
                if rand() < 0.5:
                    af += 1
                else:
                    ab += 1
            else:
                len_b -= 1
                if rand() < 0.5:
                    bf += 1
                else:
                    bb += 1
        return af, ab, bf, bb
    # random() takes two words w1, w2 and is (w1 >> 5) * 2**-27 + (w2 >> 6) * 2**-53, so
    # random() < 0.5  <=>  w1 < 2**31  <=>  the top bit of w1 is 0. words(2n) draws the same 2n
    # words in order, each as 4 little-endian bytes: w1 of pop t is bytes 8t..8t+3, its top bit
    # the high bit of byte 8t + 3. So one draw decides every pop: byte < 128 means "from the front".
    top_bytes = draws.words(2 * excess)[3::8]
    # Which list each pop takes: the longer one, B on a tie. With A longer, A takes the first
    # len_a - len_b pops, then B, A, B, ... alternate; otherwise B takes len_b - len_a + 1 pops,
    # then A, B, A, ...
    if len_a > len_b:
        d = min(len_a - len_b, excess)
        from_a = top_bytes[:d] + top_bytes[d + 1::2]
        from_b = top_bytes[d::2]
    else:
        d = min(len_b - len_a + 1, excess)
        from_a = top_bytes[d::2]
        from_b = top_bytes[:d] + top_bytes[d + 1::2]
    af = len(from_a.translate(None, _HIGH_BYTES))  # count the bytes < 128
    bf = len(from_b.translate(None, _HIGH_BYTES))
    return af, len(from_a) - af, bf, len(from_b) - bf


# --- reading ------------------------------------------------------------------------------------

ProgressFn = Callable[[int, int, int], None]
"""Progress callback: (input bytes read, documents, instances) since the last call."""


def _ids_fn(tokenizer) -> Callable[[str], list[int]]:
    fast = getattr(tokenizer, "tokenize_to_ids", None)
    if fast is not None:
        return fast
    tokenize, convert = tokenizer.tokenize, tokenizer.convert_tokens_to_ids
    return lambda text: convert(tokenize(text))


def read_documents(path: str | os.PathLike, tokenizer,
                   progress: Optional[ProgressFn] = None) -> tuple[list, int]:
    """Reads one input file as Google does: one sentence a line, blank lines between documents.

    Returns (documents, number of tokens): each document a list of sentences, each a list of token
    ids. Lines are split on ``\\n`` only with every ``\\r`` removed (as ``tf.gfile``'s
    ``readline``), decoded as UTF-8 dropping invalid bytes (the rule of Google's
    ``convert_to_unicode``; Google's script itself, on TF2, stops with a ``UnicodeDecodeError``
    first: text-mode ``tf.gfile`` decodes strictly), then ``str.strip``ped. A line that strips to
    nothing ends the document; a non-blank line that tokenizes to nothing (only control
    characters, say) does not — Google's quirk, kept. Empty documents are dropped.
    """
    to_ids = _ids_fn(tokenizer)
    documents: list[list[list[int]]] = [[]]
    num_tokens = 0
    reported = 0
    text_check = TextCheck(os.fspath(path))
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if b"\r" in raw:
                # tf.gfile's readline (TensorFlow's C++ ReadLine) drops every \r, not only the one
                # of a \r\n: "ab\rcd" is the word "abcd" in Google's run.
                raw = raw.replace(b"\r", b"")
            line = text_check.decode(raw, n).strip()
            if not line:
                documents.append([])
            else:
                ids = to_ids(line)
                if ids:
                    documents[-1].append(ids)
                    num_tokens += len(ids)
            if progress is not None and not n & 4095:
                position = f.tell()
                progress(position - reported, 0, 0)
                reported = position
        if progress is not None:
            progress(f.tell() - reported, 0, 0)
    text_check.finish()
    documents = [d for d in documents if d]
    if progress is not None:
        progress(0, len(documents), 0)
    return documents, num_tokens


# --- instances --------------------------------------------------------------------------------

def create_training_instances(documents: list, config: PretrainingDataConfig, vocab: VocabIds,
                              rng: random.Random,
                              progress: Optional[ProgressFn] = None) -> list[TrainingInstance]:
    """Google's ``create_training_instances`` after reading: shuffle the documents, make instances
    from each document ``dupe_factor`` times, shuffle the instances. ``documents`` is shuffled in
    place."""
    instances: list[TrainingInstance] = []
    with _draws_of(rng) as draws:
        for batch in _instance_batches(documents, config, vocab, draws):
            instances.extend(batch)
            if progress is not None:
                progress(0, 0, len(batch))
        draws.shuffle(instances)
    return instances


def _instance_batches(all_documents: list, config: PretrainingDataConfig, vocab: VocabIds, draws):
    """Yields the instances of each document of each dupe pass, in Google's order (before the
    final shuffle), drawing from ``draws`` (see ``_draws_of``)."""
    draws.shuffle(all_documents)
    # Everything below is Google's create_instances_from_document and create_masked_lm_predictions,
    # inlined into one loop (a Python call per step would dominate the run time).
    random_ = draws.random
    randbelow = draws.randbelow
    shuffle = draws.shuffle
    mask = draws.mask
    masked_lm = draws.masked_lm
    max_seq_length = config.max_seq_length
    max_num_tokens = max_seq_length - 3  # Account for [CLS], [SEP], [SEP]
    short_seq_prob = config.short_seq_prob
    masked_lm_prob = config.masked_lm_prob
    max_predictions = config.max_predictions_per_seq
    wwm = config.do_whole_word_mask
    is_subword = vocab.is_subword
    cls_id, sep_id, mask_id = vocab.cls_id, vocab.sep_id, vocab.mask_id
    word_ids = vocab.word_ids
    num_documents = len(all_documents)
    # Python 3 round(): halves go to the even integer (Google's script, run on Python 3, does
    # the same).
    num_to_predict_for = [min(max_predictions, max(1, int(round(n * masked_lm_prob))))
                          for n in range(max_seq_length + 1)]

    for _ in range(config.dupe_factor):
        for document_index in range(num_documents):
            document = all_documents[document_index]
            instances = []
            target_seq_length = max_num_tokens
            if random_() < short_seq_prob:
                target_seq_length = 2 + randbelow(max_num_tokens - 1)  # rng.randint(2, max_num_tokens)
            current_chunk: list = []
            current_length = 0
            i = 0
            doc_len = len(document)
            while i < doc_len:
                segment = document[i]
                current_chunk.append(segment)
                current_length += len(segment)
                if i == doc_len - 1 or current_length >= target_seq_length:
                    # (Google tests `if current_chunk:` here; it always holds.)
                    a_end = 1
                    if len(current_chunk) >= 2:
                        a_end = 1 + randbelow(len(current_chunk) - 1)  # rng.randint(1, len - 1)
                    tokens_a = []
                    for j in range(a_end):
                        tokens_a.extend(current_chunk[j])
                    tokens_b = []
                    # (Short-circuit, as Google's: a one-segment chunk draws nothing here.)
                    if len(current_chunk) == 1 or random_() < 0.5:
                        is_random_next = True
                        target_b_length = target_seq_length - len(tokens_a)
                        # Google tries 10 times to pick another document, then keeps whatever it
                        # drew last: with a single document, "random next" comes from itself.
                        for _ in range(10):
                            random_document_index = randbelow(num_documents)
                            if random_document_index != document_index:
                                break
                        random_document = all_documents[random_document_index]
                        random_start = randbelow(len(random_document))
                        for j in range(random_start, len(random_document)):
                            tokens_b.extend(random_document[j])
                            if len(tokens_b) >= target_b_length:
                                break
                        # "Put back" the unused segments of the chunk: they start the next one.
                        i -= len(current_chunk) - a_end
                    else:
                        is_random_next = False
                        for j in range(a_end, len(current_chunk)):
                            tokens_b.extend(current_chunk[j])

                    len_a, len_b = len(tokens_a), len(tokens_b)
                    if len_a + len_b > max_num_tokens:
                        af, ab, bf, bb = _truncation(len_a, len_b, max_num_tokens, draws)
                        tokens_a = tokens_a[af:len_a - ab]
                        tokens_b = tokens_b[bf:len_b - bb]
                        len_a, len_b = len(tokens_a), len(tokens_b)

                    tokens = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
                    num_tokens = len(tokens)

                    # create_masked_lm_predictions.
                    # num_to_predict = min(max_predictions_per_seq,
                    #                      max(1, int(round(len(tokens) * masked_lm_prob))))
                    num_to_predict = num_to_predict_for[num_tokens]
                    if not wwm:
                        positions, labels = masked_lm(tokens, len_a, num_to_predict, mask_id, word_ids)
                    else:
                        # Whole-word grouping, Google's test: `len(cand_indexes) >= 1 and
                        # token.startswith("##")`. [CLS]/[SEP] are skipped before the test (they
                        # are positions 0, len_a + 1 and the last, see masked_lm), so a "##" piece
                        # opening B (left by truncation from the front, or a random document)
                        # joins the last word of A; one opening A starts its own group.
                        cand_indexes: list = []
                        for pos in range(1, num_tokens - 1):
                            if pos == len_a + 1:
                                continue
                            if cand_indexes and is_subword[tokens[pos]]:
                                cand_indexes[-1].append(pos)
                            else:
                                cand_indexes.append([pos])
                        shuffle(cand_indexes)  # rng.shuffle(cand_indexes)
                        # Which candidates get masked depends on counts only, not on the draws:
                        # pick them first, then draw for each in Google's order.
                        chosen: list[int] = []
                        for index_set in cand_indexes:
                            if len(chosen) >= num_to_predict:
                                break
                            # Skip a word whose pieces would exceed num_to_predict. (Google also
                            # skips a word with an already covered index; groups are disjoint,
                            # so none is.)
                            if len(chosen) + len(index_set) > num_to_predict:
                                continue
                            chosen += index_set
                        positions, labels = mask(tokens, chosen, mask_id, word_ids)
                    # tokens is now the output tokens.
                    instances.append(
                        TrainingInstance(tokens, len_a, positions, labels, is_random_next))
                    current_chunk = []
                    current_length = 0
                i += 1
            yield instances


# --- serialization ----------------------------------------------------------------------------

def _join_varints(table: list, ids: list) -> bytes:
    """The varints of ``ids`` from ``table`` (the varint bytes of each id), concatenated: the
    pure-Python twin of ``_speedups.varints``."""
    if len(ids) > 1:
        # itemgetter(*ids)(table) looks all ids up in one C call (a third faster than map);
        # with one argument it returns the item itself, not a 1-tuple.
        return b"".join(itemgetter(*ids)(table))
    return table[ids[0]] if ids else b""


class ExampleEncoder:
    """Serializes instances as Google's ``tf.train.Example`` (features in sorted name order),
    framed as TFRecords.

    Everything that depends only on a length is precomputed: the headers of each feature for
    each payload length, the ``input_mask`` and ``masked_lm_weights`` features for each count,
    the record header with its CRC for each record length, the varint bytes of every id. Per
    record, only the id payloads are encoded (``_speedups.varints``, or ``bytes.join`` over the
    table without the compiled module), the pieces joined and the data CRC computed. (Encoding
    the ids of a batch with numpy instead measured twice as slow as the table: its fancy
    indexing costs more than ``bytes.join``.)
    """

    _NAMES = ("input_ids", "input_mask", "masked_lm_ids", "masked_lm_positions", "masked_lm_weights",
              "next_sentence_labels", "segment_ids")

    def __init__(self, max_seq_length: int, max_predictions_per_seq: int, vocab_size: int):
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
        self._nsp_items = [self._header("next_sentence_labels", 1) + b"\x00",
                           self._header("next_sentence_labels", 1) + b"\x01"]
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

    def encode(self, inst: TrainingInstance) -> bytes:
        """The serialized ``tf.train.Example`` of one instance (not framed)."""
        return self._examples([inst])[0]

    def records(self, instances: Sequence[TrainingInstance]) -> list[bytes]:
        """The framed TFRecords of ``instances``."""
        out = []
        head_cache = self._record_headers
        for data in self._examples(instances):
            n = len(data)
            head = head_cache.get(n)
            if head is None:
                head = head_cache[n] = frame_record(data)[:12]  # length and its masked CRC
            out.append(head + data + _pack_crc(masked_crc32c(data)))
        return out

    def _examples(self, instances: Sequence[TrainingInstance]) -> list[bytes]:
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
            varints = functools.partial(_join_varints, V)
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


# --- shards and outputs -------------------------------------------------------------------------

@dataclass
class MakeDataSummary:
    """Counts of a ``make_pretraining_data`` run."""

    documents: int = 0
    """Non-empty documents read."""
    tokens: int = 0
    """Word pieces read (before dupe_factor)."""
    instances: int = 0
    """Records written."""
    outputs: list = field(default_factory=list)
    """Files written."""
    inputs: list = field(default_factory=list)
    """Input files processed (this shard selection)."""


def _fill(template: str, index: int, path: str, num_inputs: int) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        return template.format(index=index, name=stem, num_inputs=num_inputs)
    except (KeyError, IndexError, ValueError) as e:
        raise BertDetrError(
            f"bad output template {template!r} ({e!s}); use {{index}}, {{name}} and {{num_inputs}}, "
            "e.g. out/{index:05d}.tfrecord"
        ) from None


def _has_fields(spec: str) -> bool:
    try:
        return any(name is not None for _, name, _, _ in string.Formatter().parse(spec))
    except ValueError:
        return True  # a malformed template: _fill reports it


def plan_outputs(inputs: Sequence[str], output_file: str) -> list[list[str]]:
    """The output files of each input, from ``--output-file``.

    ``output_file`` is a comma-separated list of specs; each shard writes its instances
    round-robin over its own files, one per spec (Google's behaviour for a single input). A spec
    is a file name (only with one input, as Google's), a template with ``{index}`` (the input's
    position in the sorted input list; format specs allowed, ``{index:05d}``), ``{name}`` (the
    input's file name without extension) and ``{num_inputs}``, or a directory (an existing one, or
    a name ending in ``/``), meaning ``DIR/{index:05d}-{name}.tfrecord``.
    """
    specs = [s.strip() for s in output_file.split(",") if s.strip()]
    if not specs:
        raise BertDetrError("no output file given")
    expanded = []
    for spec in specs:
        if spec.endswith(("/", os.sep)) or os.path.isdir(spec):
            spec = os.path.join(spec, "{index:05d}-{name}.tfrecord")
        elif len(inputs) > 1 and not _has_fields(spec):
            raise BertDetrError(
                f"{len(inputs)} input files need an output template with {{index}} or {{name}}, or a "
                f"directory, not the single file {spec!r} (each input shard writes its own files; "
                "e.g. --output-file out/{index:05d}.tfrecord)"
            )
        expanded.append(spec)
    plan = [[_fill(spec, i, path, len(inputs)) for spec in expanded] for i, path in enumerate(inputs)]
    seen: dict[str, int] = {}
    for i, outs in enumerate(plan):
        for out in outs:
            key = os.path.abspath(out)
            if key in seen:
                raise BertDetrError(
                    f"output {out} is planned twice (inputs {seen[key]} and {i}); "
                    "use {index} in --output-file"
                )
            seen[key] = i
    return plan


def _check_has_text(path: str) -> bool:
    """True if ``path`` has a non-whitespace byte (scans only up to the first one)."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return False
            if chunk.strip():
                return True


_TOKENIZERS: dict = {}


def _tokenizer(vocab_file: str, do_lower_case: bool):
    """The process's tokenizer for this vocab (loaded once per process; reloaded if the file
    changed)."""
    from bertdetr.bert.tokenization import FullTokenizer

    try:
        stat = os.stat(vocab_file)
        key = (os.path.abspath(vocab_file), stat.st_mtime_ns, stat.st_size, do_lower_case)
    except OSError:
        key = None  # FullTokenizer reports the missing file
    if key is None or key not in _TOKENIZERS:
        tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
        _TOKENIZERS.clear()
        _TOKENIZERS[key] = tokenizer
    return _TOKENIZERS[key]


@dataclass
class _ShardTask:
    index: int
    path: str
    outputs: list
    seed: int
    vocab_file: str
    config: PretrainingDataConfig


@contextlib.contextmanager
def _without_cyclic_gc():
    """Turns Python's cyclic garbage collector off for a shard, then back on.

    A shard allocates millions of short-lived lists and holds tens of thousands of long-lived
    ones (its documents); the collector's passes over them cost ~8% of the run and find nothing:
    the algorithm makes no reference cycles, so reference counting frees everything anyway.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def process_shard(task: _ShardTask, progress: Optional[ProgressFn] = None) -> MakeDataSummary:
    """Google's whole script on one input file: read, create instances, write the outputs."""
    with _without_cyclic_gc():
        return _process_shard(task, progress)


def _process_shard(task: _ShardTask, progress: Optional[ProgressFn]) -> MakeDataSummary:
    config = task.config
    tokenizer = _tokenizer(task.vocab_file, config.do_lower_case)
    vocab = VocabIds(tokenizer.vocab)
    documents, num_tokens = read_documents(task.path, tokenizer, progress)
    if not documents:
        raise BertDetrError(f"{task.path}: no text to make pretraining data from "
                            "(every line is blank or tokenizes to nothing)")
    encoder = ExampleEncoder(config.max_seq_length, config.max_predictions_per_seq, vocab.size)
    records: list[bytes] = []
    num_documents = len(documents)
    pending: list[TrainingInstance] = []
    with _draws_of(random.Random(task.seed)) as draws:
        for batch in _instance_batches(documents, config, vocab, draws):
            pending += batch
            if len(pending) >= 1024:
                records += encoder.records(pending)
                if progress is not None:
                    progress(0, 0, len(pending))
                pending = []
        records += encoder.records(pending)
        if progress is not None:
            progress(0, 0, len(pending))
        del documents, pending
        draws.shuffle(records)  # Google's rng.shuffle(instances)
    _write_round_robin(records, task.outputs)
    return MakeDataSummary(documents=num_documents, tokens=num_tokens, instances=len(records),
                           outputs=list(task.outputs), inputs=[task.path])


def _write_round_robin(records: list[bytes], outputs: list[str]) -> None:
    """Google's write_instance_to_example_files: record k goes to output k mod len(outputs).
    Every file is written under a temp name and renamed only when all are complete."""
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(atomic_output(path, "wb")) for path in outputs]
        n = len(files)
        for w, f in enumerate(files):
            f.writelines(records[w::n])  # no joined copy of the shard's records


def make_pretraining_data(
    input_patterns: Iterable[str],
    output_file: str,
    vocab_file: str | os.PathLike,
    config: PretrainingDataConfig,
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    progress: bool = False,
) -> MakeDataSummary:
    """``bertdetr bert make-data``: every check first, then the shards (``workers`` at a time).

    Inputs are expanded (comma-separated paths and globs, sorted within a glob); the shard
    selection keeps input ``i`` when ``i % num_shards == shard_index`` (so a cluster scheduler can
    split a job over ``num_shards`` tasks); seeds and output names use ``i`` itself, so the
    selection never changes what a shard writes.
    """
    if workers < 1:
        raise BertDetrError(f"workers must be >= 1, got {workers}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise BertDetrError(f"shard index {shard_index} is not in [0, num_shards={num_shards})")
    inputs = expand_inputs(input_patterns)
    plan = plan_outputs(inputs, output_file)
    vocab_file = os.fspath(vocab_file)
    tokenizer = _tokenizer(vocab_file, config.do_lower_case)  # a bad vocab fails here, before work
    VocabIds(tokenizer.vocab)
    tasks = [_ShardTask(i, path, plan[i], shard_seed(config.random_seed, i), vocab_file, config)
             for i, path in enumerate(inputs) if i % num_shards == shard_index]
    empty = [t.path for t in tasks if not _check_has_text(t.path)]
    if empty:
        raise BertDetrError(f"input has no text (empty, or only blank lines): {', '.join(empty)}")
    for t in tasks:
        for out in t.outputs:
            check_writable(out)

    summary = MakeDataSummary()
    if not tasks:
        return summary
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(os.path.getsize(t.path) for t in tasks)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="make-data", file=sys.stderr,
                   dynamic_ncols=True)
    counts = [0, 0]

    def report(nbytes: int, ndocs: int, ninst: int) -> None:
        if bar is None:
            return
        counts[0] += ndocs
        counts[1] += ninst
        if nbytes:
            bar.update(nbytes)
        if ndocs or ninst:
            bar.set_postfix(documents=counts[0], instances=counts[1], refresh=False)

    try:
        if workers == 1 or len(tasks) == 1:
            results = [process_shard(t, report) for t in tasks]
        else:
            results = _run_parallel(tasks, min(workers, len(tasks)), report)
    finally:
        if bar is not None:
            bar.close()
    for r in results:  # in input order
        summary.documents += r.documents
        summary.tokens += r.tokens
        summary.instances += r.instances
        summary.outputs.extend(r.outputs)
        summary.inputs.extend(r.inputs)
    return summary


_QUEUE = None


def _init_worker(q) -> None:
    global _QUEUE
    _QUEUE = q


def _worker(task: _ShardTask) -> MakeDataSummary:
    q = _QUEUE
    pending = [0, 0, 0]
    last = [time.monotonic()]

    def report(nbytes, ndocs, ninst):
        pending[0] += nbytes
        pending[1] += ndocs
        pending[2] += ninst
        if time.monotonic() - last[0] > 0.2:
            q.put(tuple(pending))
            pending[:] = [0, 0, 0]
            last[0] = time.monotonic()

    result = process_shard(task, report if q is not None else None)
    if q is not None:
        q.put(tuple(pending))
    return result


def _run_parallel(tasks: list, workers: int, report: ProgressFn) -> list[MakeDataSummary]:
    # spawn, not fork: the parent may hold threads (tqdm's monitor) and large objects.
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(q,)) as pool:
        pending = [(k, pool.apply_async(_worker, (t,))) for k, t in enumerate(tasks)]
        results: list = [None] * len(tasks)
        while pending:
            try:
                report(*q.get(timeout=0.1))
            except queue_mod.Empty:
                pass
            still = []
            for k, p in pending:
                if p.ready():
                    results[k] = p.get()  # re-raises a shard's error here
                else:
                    still.append((k, p))
            pending = still
        while True:
            try:
                report(*q.get_nowait())
            except queue_mod.Empty:
                break
    return results


def describe_example(example: dict, inv_vocab: dict) -> dict:
    """A decoded record (``bertdetr.bert.records.parse_example``) in words: the tokens with the
    masks applied, and for each masked position the original token."""
    ids = [int(i) for i, m in zip(example["input_ids"], example["input_mask"]) if m]
    weights = example["masked_lm_weights"]
    positions = [int(p) for p, w in zip(example["masked_lm_positions"], weights) if w]
    targets = [inv_vocab[int(t)] for t, w in zip(example["masked_lm_ids"], weights) if w]
    return {
        "tokens": [inv_vocab[i] for i in ids],
        "masked": list(zip(positions, targets)),
        "is_random_next": bool(int(example["next_sentence_labels"][0])),
    }

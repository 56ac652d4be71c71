"""Pretraining data as Google's ``create_pretraining_data.py`` makes it, function for function.

The functions here are Google's, under Google's names, and ``bertdetr bert make-data``
(``bertdetr.bert.pretraining.make_data``) calls them for each input file:

    documents = read_documents(input_file, tokenizer)                    # Google's reading
    instances = create_training_instances(documents, config, vocab, rng)
        # shuffle the documents; dupe_factor times, for each document:
        #   create_instances_from_document -> truncate_seq_pair, create_masked_lm_predictions
        # shuffle the instances
    write_instance_to_example_files(instances, output_files, encoder)     # tf.train.Example records

For one input file and equal flags the records are Google's, record for record: the same
algorithm consuming the same ``random.Random(random_seed)`` stream in the same order, then the
same ``tf.train.Example`` features with Google's dtypes and padding, written round-robin over the
output files. (``bench/reference_pretraining_data.py`` is an independent plain version, on token
strings; the tests compare the two and both with Google's own output.)

What differs from Google's script, none of it visible in the records:

- **Token ids instead of token strings.** Documents are lists of vocabulary ids; Google's string
  tests map onto ids exactly (see the comments at each one).
- **The draws.** Every random decision goes through ``bertdetr.bert.pretraining.draws``: the shard's
  ``random.Random`` continued in C when the optional module ``bertdetr.bert.pretraining._speedups`` is built,
  else ``random.Random``'s C methods called without their Python wrappers. Either way every draw
  consumes exactly the 32-bit words Google's call would (``draws.py`` has the table), and ``rng``
  is left where Google's run leaves it. Where a step's draws are many and fixed by counts alone,
  they are made in one call (the non-whole-word masking, the coin flips of a long truncation).
- **Truncation is counted**, not done a token at a time (``truncate_seq_pair``).
- **Masks are applied in place** on the instance's token list (Google returns a masked copy).
- **Instances can be kept serialized** (``create_training_instances(serialize=...)``): a shard
  holds its records as bytes, not as Python lists, until the final shuffle and the writing.
- **Shards**: each input file is a run of Google's script of its own (``bertdetr.bert.pretraining.make_data``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

from bertdetr.bert.pretraining.draws import Draws, coin_flips, draws_of
from bertdetr.bert.pretraining.features import ExampleEncoder
from bertdetr.bert.pretraining.roberta import create_doc_sentences, create_full_sentences, word_continues
from bertdetr.errors import BertDetrError, require_field_types
from bertdetr.fileio import TextCheck, atomic_output

__all__ = [
    "PretrainingDataConfig",
    "TrainingInstance",
    "VocabIds",
    "read_documents",
    "create_training_instances",
    "create_instances_from_document",
    "create_masked_lm_predictions",
    "sequence_of_sentences",
    "truncate_seq_pair",
    "write_instance_to_example_files",
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
    next_sentence: bool = True
    """Pairs for Google's next-sentence task; false: sequences of whole sentences, masked LM alone (RoBERTa's)."""
    cross_documents: bool = True
    """Without the next-sentence task: sequences run on into the next document after a [SEP]
    (RoBERTa's FULL-SENTENCES); false: each stays in its document (DOC-SENTENCES)."""
    dynamic_masking: bool = False
    """Write unmasked sequences; the trainer masks each batch afresh (RoBERTa's dynamic masking)."""
    word_segmenter: str | None = None
    """Chinese whole-word masking: words from this segmenter (jieba: ``jieba.lcut(line)``); needs do_whole_word_mask."""
    do_lower_case: bool = True
    """Lowercase and strip accents when tokenizing (uncased vocab)."""

    def __post_init__(self):
        require_field_types(self, "")
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
        if self.word_segmenter is not None:
            if self.word_segmenter not in ("jieba",):
                raise BertDetrError(f"unknown word_segmenter {self.word_segmenter!r}; choose jieba")
            if not self.do_whole_word_mask:
                raise BertDetrError("a word segmenter is for whole-word masking: add --do-whole-word-mask")


@dataclass(slots=True)
class TrainingInstance:
    """A single training instance (sentence pair): Google's ``TrainingInstance``, with ids."""

    input_ids: list
    """[CLS] A [SEP] B [SEP] with the masks applied, unpadded (Google's ``tokens``)."""
    num_a: int
    """The length of A: ``segment_ids`` is 0 over [CLS] A [SEP] and 1 over B [SEP]."""
    masked_lm_positions: list
    """The masked positions, ascending."""
    masked_lm_ids: list
    """The original ids at ``masked_lm_positions`` (Google's ``masked_lm_labels``)."""
    is_random_next: bool
    """True when B is from another place ("random next"), not A's continuation."""
    word_continues: list | None = None
    """Dynamic masking with whole words: 1 where a token continues the word before it."""

    @property
    def segment_ids(self) -> list[int]:
        return [0] * (self.num_a + 2) + [1] * (len(self.input_ids) - self.num_a - 2)


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
        # Chinese whole-word masking (chinese_ref.py): a character that continues a word is read
        # as id + shadow, above every vocabulary id, and counts as a "##" piece; the masking
        # stores its plain id again.
        self.shadow = len(self.is_subword)


# --- writing --------------------------------------------------------------------------------------

def write_instance_to_example_files(instances: Sequence, output_files: Sequence[str],
                                    encoder: Optional[ExampleEncoder] = None) -> None:
    """Create TF example files from ``TrainingInstance``s (Google's
    ``write_instance_to_example_files``): instance k, as a ``tf.train.Example`` TFRecord, goes to
    output file k mod ``len(output_files)``.

    With ``encoder`` (``bertdetr.bert.pretraining.features.ExampleEncoder``: Google's feature conversion)
    ``instances`` are ``TrainingInstance``s; without it they are their records, already encoded
    (``create_training_instances(serialize=encoder.records)``, as the command does). Every file is
    written under a temporary name and renamed only when all are complete.
    """
    records = instances if encoder is None else encoder.records(instances)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(atomic_output(path, "wb")) for path in output_files]
        n = len(files)
        for w, f in enumerate(files):
            f.writelines(records[w::n])  # no joined copy of the shard's records


# --- reading --------------------------------------------------------------------------------------

ProgressFn = Callable[[int, int, int], None]
"""Progress callback: (input bytes read, documents, instances) since the last call."""


def _ids_fn(tokenizer) -> Callable[[str], list[int]]:
    """``convert_tokens_to_ids(tokenize(line))`` as one function of a line: our
    ``FullTokenizer``'s cached chunk-to-ids path, or any tokenizer with Google's methods."""
    line_function = getattr(tokenizer, "line_function", None)
    if line_function is not None:
        return line_function(to_ids=True)
    tokenize, convert = tokenizer.tokenize, tokenizer.convert_tokens_to_ids
    return lambda text: convert(tokenize(text))


def read_documents(path: str | os.PathLike, tokenizer,
                   progress: Optional[ProgressFn] = None,
                   word_marks: Optional[Callable[[str, list], list]] = None,
                   shadow: int = 0) -> tuple[list, int]:
    """The reading half of Google's ``create_training_instances``, for one input file: one
    sentence a line, blank lines between documents.

    Returns (documents, number of tokens): each document a list of sentences, each a list of token
    ids. Lines are split on ``\\n`` only with every ``\\r`` removed (as ``tf.gfile``'s
    ``readline``), decoded as UTF-8 dropping invalid bytes (the rule of Google's
    ``convert_to_unicode``; Google's script itself, on TF2, stops with a ``UnicodeDecodeError``
    first: text-mode ``tf.gfile`` decodes strictly), then ``str.strip``ped. A line that strips to
    nothing ends the document; a non-blank line that tokenizes to nothing (only control
    characters, say) does not — Google's quirk, kept. Empty documents are dropped.

    With ``word_marks`` (Chinese whole-word masking, ``chinese_ref.py``), called with each
    non-blank line and its ids, the ids at the positions it returns (characters that continue a
    word) are stored plus ``shadow`` (``VocabIds.shadow``): the masking treats them as ``##``
    pieces and writes their plain ids.
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
                if word_marks is not None:
                    marks = word_marks(line, ids)
                    if marks:
                        ids = list(ids)
                        for k in marks:
                            ids[k] += shadow
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


# --- instances ------------------------------------------------------------------------------------

_SERIALIZE_BATCH = 1024
"""``create_training_instances(serialize=...)``: instances made before they are serialized."""


def create_training_instances(all_documents: list, config: PretrainingDataConfig, vocab: VocabIds,
                              rng: random.Random,
                              serialize: Optional[Callable[[list], list]] = None,
                              progress: Optional[ProgressFn] = None) -> list:
    """Create ``TrainingInstance``s from documents (Google's ``create_training_instances``, after
    its reading: ``read_documents``).

    Shuffles the documents, makes the instances of each document ``dupe_factor`` times over
    (``create_instances_from_document``), shuffles the instances. ``all_documents`` is shuffled in
    place. ``rng`` is the shard's ``random.Random``; all draws go through ``draws_of(rng)`` and
    leave it where Google's run leaves it.

    With ``serialize`` (``ExampleEncoder.records``), the instances are kept as what it returns,
    made a batch at a time while the instances are: a shard then holds its records as bytes, not
    as Python lists (about half the memory). The final shuffle permutes them all the same.
    """
    instances: list = []
    made: list[TrainingInstance] = []  # not yet kept

    def keep() -> None:
        instances.extend(made if serialize is None else serialize(made))
        if progress is not None:
            progress(0, 0, len(made))
        made.clear()

    with draws_of(rng) as draws:
        draws.shuffle(all_documents)  # rng.shuffle(all_documents)
        for _ in range(config.dupe_factor):
            for some in _instances_of_a_pass(all_documents, config, vocab, draws):
                made += some
                if len(made) >= _SERIALIZE_BATCH:
                    keep()
        keep()
        draws.shuffle(instances)  # rng.shuffle(instances)
    return instances


def _instances_of_a_pass(all_documents: list, config: PretrainingDataConfig, vocab: VocabIds,
                         draws: Draws) -> Iterator[list]:
    """One pass over the documents, a few instances at a time: Google's pairs
    (``create_instances_from_document``), or without the next-sentence task RoBERTa's sequences
    of whole sentences (``roberta``)."""
    if config.next_sentence:
        for document_index in range(len(all_documents)):
            yield create_instances_from_document(all_documents, document_index, config, vocab, draws)
        return
    finish = functools.partial(sequence_of_sentences, config=config, vocab=vocab, rng=draws)
    if config.cross_documents:
        for instance in create_full_sentences(all_documents, config, vocab.sep_id, draws, finish):
            yield [instance]
    else:
        for document in all_documents:
            yield list(create_doc_sentences(document, config, draws, finish))


def create_instances_from_document(all_documents: list, document_index: int,
                                   config: PretrainingDataConfig, vocab: VocabIds,
                                   rng: Draws) -> list[TrainingInstance]:
    """Creates the ``TrainingInstance``s of one document (Google's
    ``create_instances_from_document``); ``rng`` is ``draws_of`` the shard's ``random.Random``.

    The document is cut into chunks of whole sentences of about a target length (usually the most
    that fits, with probability ``short_seq_prob`` a random shorter one: pretraining then also sees
    the short inputs of fine-tuning). Each chunk is split at a random sentence into A and B; B is,
    on a coin flip (or always, for a one-sentence chunk), sentences of another random document
    instead: the "random next" of the next-sentence task, whose unused sentences of the chunk then
    start the next chunk. Each pair is truncated (``truncate_seq_pair``) and masked
    (``create_masked_lm_predictions``).
    """
    document = all_documents[document_index]
    random_, randbelow = rng.random, rng.randbelow
    num_documents = len(all_documents)
    cls_id, sep_id = vocab.cls_id, vocab.sep_id
    masked_lm_prob, max_predictions_per_seq = config.masked_lm_prob, config.max_predictions_per_seq
    do_whole_word_mask = config.do_whole_word_mask

    # Account for [CLS], [SEP], [SEP]
    max_num_tokens = config.max_seq_length - 3

    # We *usually* want to fill up the entire sequence since we are padding to max_seq_length
    # anyways, so short sequences are generally wasted computation. However, we *sometimes*
    # (i.e., short_seq_prob == 0.1 == 10% of the time) want to use shorter sequences to minimize
    # the mismatch between pre-training and fine-tuning. (Google's comment.)
    target_seq_length = max_num_tokens
    if random_() < config.short_seq_prob:
        target_seq_length = 2 + randbelow(max_num_tokens - 1)  # rng.randint(2, max_num_tokens)

    instances = []
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
            # `a_end` is how many segments from `current_chunk` go into the `A` (first) sentence.
            a_end = 1
            if len(current_chunk) >= 2:
                a_end = 1 + randbelow(len(current_chunk) - 1)  # rng.randint(1, len(current_chunk) - 1)
            tokens_a = []
            for j in range(a_end):
                tokens_a.extend(current_chunk[j])

            tokens_b = []
            # Random next. (Short-circuit, as Google's: a one-segment chunk draws nothing here.)
            if len(current_chunk) == 1 or random_() < 0.5:
                is_random_next = True
                target_b_length = target_seq_length - len(tokens_a)
                # Google tries 10 times to pick another document, then keeps whatever it drew
                # last: with a single document, "random next" comes from itself.
                for _ in range(10):
                    random_document_index = randbelow(num_documents)  # rng.randint(0, len - 1)
                    if random_document_index != document_index:
                        break
                random_document = all_documents[random_document_index]
                random_start = randbelow(len(random_document))  # rng.randint(0, len - 1)
                for j in range(random_start, len(random_document)):
                    tokens_b.extend(random_document[j])
                    if len(tokens_b) >= target_b_length:
                        break
                # We didn't actually use these segments so we "put them back" so they don't go
                # to waste.
                i -= len(current_chunk) - a_end
            # Actual next
            else:
                is_random_next = False
                for j in range(a_end, len(current_chunk)):
                    tokens_b.extend(current_chunk[j])

            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            tokens = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
            len_a = len(tokens_a)
            if config.dynamic_masking:  # the trainer masks (roberta.py); only words are marked
                instances.append(TrainingInstance(tokens, len_a, [], [], is_random_next,
                                                  word_continues(tokens, len_a, vocab) if do_whole_word_mask else None))
            else:
                masked_lm_positions, masked_lm_ids = create_masked_lm_predictions(
                    tokens, len_a, masked_lm_prob, max_predictions_per_seq, do_whole_word_mask, vocab, rng)
                instances.append(TrainingInstance(tokens, len_a, masked_lm_positions, masked_lm_ids, is_random_next))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def sequence_of_sentences(chunk: list, config: PretrainingDataConfig, vocab: VocabIds, rng: Draws) -> TrainingInstance:
    """A sequence without the next-sentence task (``--no-next-sentence``, ``roberta``'s makers):
    [CLS] chunk [SEP], truncated to ``max_seq_length`` as Google truncates a pair (``truncate_seq_pair``
    with an empty B), masked (or, with dynamic masking, its words marked) as a pair's A;
    ``segment_ids`` all 0, no ``next_sentence_labels``."""
    tokens_a, _ = truncate_seq_pair(chunk, [], config.max_seq_length - 2, rng)
    tokens = [vocab.cls_id, *tokens_a, vocab.sep_id]
    len_a = len(tokens_a)
    if config.dynamic_masking:
        return TrainingInstance(tokens, len_a, [], [], False,
                                word_continues(tokens, len_a, vocab) if config.do_whole_word_mask else None)
    positions, ids = create_masked_lm_predictions(tokens, len_a, config.masked_lm_prob, config.max_predictions_per_seq,
                                                  config.do_whole_word_mask, vocab, rng)
    return TrainingInstance(tokens, len_a, positions, ids, False)


def create_masked_lm_predictions(tokens: list, len_a: int, masked_lm_prob: float, max_predictions_per_seq: int,
                                 do_whole_word_mask: bool, vocab: VocabIds, rng: Draws) -> tuple[list, list]:
    """Creates the predictions for the masked LM objective (Google's
    ``create_masked_lm_predictions``), for ``tokens`` = [CLS] A [SEP] B [SEP] with
    ``len(A) == len_a``.

    Returns (masked_lm_positions, masked_lm_ids): the masked positions ascending and the original
    ids there; ``tokens`` is masked in place (Google returns a masked copy).

    Every token but [CLS] and [SEP] is a candidate; with whole-word masking a "##" piece joins the
    candidate group of the piece before it. The groups are shuffled and taken in that order, a
    group that would overshoot ``num_to_predict`` passed over. Then each chosen position, in the
    order chosen, draws its fate (``rng.mask``): 80% [MASK], 10% kept, 10% a random vocabulary
    word (any entry, special tokens included).
    """
    # Google: min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob)))), with
    # Python 3's round (halves to even), as Google's script on Python 3; here without the calls.
    num_to_predict = round(len(tokens) * masked_lm_prob) or 1
    if num_to_predict > max_predictions_per_seq:
        num_to_predict = max_predictions_per_seq
    # Google collects candidates by testing each token string against "[CLS]"/"[SEP]"; the
    # tokenizer never produces those (it splits "[" and "]" off as punctuation), so they are
    # exactly positions 0, len_a + 1 and the last.
    if not do_whole_word_mask and len_a + 2 < len(tokens):
        # Every candidate is a group of its own, so the chosen positions are the first
        # num_to_predict of the shuffled candidates: the candidates, their shuffle and the
        # 80/10/10 draws in one call (in C with the compiled draws; see draws.PythonDraws).
        # (A sequence without B, --no-next-sentence, takes the general path below.)
        return rng.masked_lm(tokens, len_a, num_to_predict, vocab.mask_id, vocab.word_ids)

    # Whole Word Masking: all the word pieces of a word are masked together, or none. Google's
    # test: `len(cand_indexes) >= 1 and token.startswith("##")`, after skipping [CLS]/[SEP]; so a
    # "##" piece opening B (left by truncation from the front, or from a random document) joins
    # the last word of A, and one opening A starts its own group.
    # A character marked as continuing a Chinese word (id + shadow, see read_documents) is such a
    # piece too, as the "##" HFL's and transformers' Chinese WWM put before it; its plain id is
    # stored back here, before any draw, so the records never see the mark.
    is_subword, shadow, sep_id = vocab.is_subword, vocab.shadow, vocab.sep_id
    cand_indexes: list[list[int]] = []
    for i in range(1, len(tokens) - 1):
        if i == len_a + 1:  # [SEP]
            continue
        token = tokens[i]
        if token == sep_id:  # a [SEP] between documents (RoBERTa's FULL-SENTENCES); Google's test of "[SEP]"
            continue
        if token >= shadow:
            tokens[i] = token - shadow
            if cand_indexes:
                cand_indexes[-1].append(i)
            else:
                cand_indexes.append([i])
        elif cand_indexes and do_whole_word_mask and is_subword[token]:
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])
    rng.shuffle(cand_indexes)  # rng.shuffle(cand_indexes)

    # Which groups get masked depends on counts only, not on draws: choose them first, then draw
    # for each position in Google's order.
    masked_lms: list[int] = []
    for index_set in cand_indexes:
        if len(masked_lms) >= num_to_predict:
            break
        # If adding a whole-word mask would exceed the maximum number of predictions, then just
        # skip this candidate. (Google also skips a group with an already covered index; groups
        # are disjoint, so none is.)
        if len(masked_lms) + len(index_set) > num_to_predict:
            continue
        masked_lms += index_set
    return rng.mask(tokens, masked_lms, vocab.mask_id, vocab.word_ids)


_SHORT_TRUNCATION = 8
"""``truncate_seq_pair``: fewer pops than this, a loop of ``random()`` calls; more, one draw."""

_HIGH_BYTES = bytes(range(128, 256))


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int,
                      rng: Draws) -> tuple[list, list]:
    """Truncates a pair of sequences to a maximum sequence length (Google's ``truncate_seq_pair``).

    Returns the truncated (tokens_a, tokens_b), each a slice of its list or the list itself if
    nothing is removed from it (Google truncates in place). Google pops one token at a time from the longer list (B on a tie), from
    the front if ``rng.random() < 0.5`` (to add more randomness and avoid biases), else from the
    back. The same draws decide the same pops here, but the pops are counted and each list sliced
    once: Google's ``del trunc_tokens[0]`` shifts the list, quadratic in a long line (a 10 MB line
    would take hours).
    """
    len_a, len_b = len(tokens_a), len(tokens_b)
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return tokens_a, tokens_b
    if excess < _SHORT_TRUNCATION:  # Google's loop, counting the pops
        rand = rng.random
        front_a = back_a = front_b = back_b = 0
        left_a, left_b = len_a, len_b
        while left_a + left_b > max_num_tokens:
            if left_a > left_b:
                left_a -= 1
                if rand() < 0.5:
                    front_a += 1
                else:
                    back_a += 1
            else:
                left_b -= 1
                if rand() < 0.5:
                    front_b += 1
                else:
                    back_b += 1
    else:
        # Many pops: all the coin flips in one draw (a byte below 128: from the front). Which list
        # each pop takes depends on the lengths only: with A longer, A takes the first
        # len_a - len_b pops, then B, A, B, ... alternate; otherwise B takes len_b - len_a + 1
        # pops, then A, B, A, ...
        flips = coin_flips(rng, excess)
        if len_a > len_b:
            d = min(len_a - len_b, excess)
            from_a = flips[:d] + flips[d + 1::2]
            from_b = flips[d::2]
        else:
            d = min(len_b - len_a + 1, excess)
            from_a = flips[d::2]
            from_b = flips[:d] + flips[d + 1::2]
        front_a = len(from_a.translate(None, _HIGH_BYTES))  # count the bytes < 128
        front_b = len(from_b.translate(None, _HIGH_BYTES))
        back_a, back_b = len(from_a) - front_a, len(from_b) - front_b
    # (A list that loses nothing is returned as it is: usually only the longer one is cut.)
    return (tokens_a[front_a:len_a - back_a] if front_a or back_a else tokens_a,
            tokens_b[front_b:len_b - back_b] if front_b or back_b else tokens_b)


# --- reading records back -------------------------------------------------------------------------

def describe_example(example: dict, inv_vocab: dict) -> dict:
    """A decoded record (``bertdetr.bert.data.records.parse_example``) in words: the tokens with the
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

"""A plain, slow reference of ``bertdetr bert make-data`` (Google's pretraining-data algorithm).

``bertdetr.bert.pretraining.create_pretraining_data`` is built for speed: token ids instead of strings, the random
stream drawn word by word through ``getrandbits``, truncation counted instead of performed,
whole-word masking decided before its draws. Each trick claims to change nothing in the output.
This module is the claim's yardstick: the same algorithm written the obvious way, on token
*strings*, with every random decision made through ``random.Random``'s ordinary methods
(``random``, ``randint``, ``shuffle``) at the moment the algorithm needs it. It is deliberately
slow and has no state besides the ``rng`` handed in.

It agrees with the records of Google's ``create_pretraining_data.py`` on the golden runs in
``tests/data/bert/sample-*`` (a test checks it), and ``tests/bert/test_pretraining_data_oracle.py``
compares the fast implementation with it on generated corpora and many flag sets. Run as a script
it compares itself with Google's script (``bert-tensorflow`` 1.0.4, which predates whole-word
masking) on generated corpora::

    PYTHONPATH=src python bench/reference_pretraining_data.py --google-python /tmp/tfenv/bin/python

The algorithm, in the order it consumes the one random stream:

1. Read the corpus: one sentence a line, a blank line ends a document. Every sentence becomes
   its word pieces; sentences with no pieces are dropped (but a line made only of, say, control
   characters is not blank, so it does not end the document). Empty documents are dropped.
2. Shuffle the documents (``rng.shuffle``).
3. ``dupe_factor`` times, for every document in the shuffled order, make sentence pairs from it
   (see ``pairs_of_document``), and for each pair, right after making it: trim it to the length
   limit (``trim_pair``) and mask it (``mask_pair``).
4. Shuffle all instances (``rng.shuffle``) and turn them into padded features.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"

# The flags of a run are read from any object with Google's flag names as attributes:
# max_seq_length, max_predictions_per_seq, dupe_factor, masked_lm_prob, short_seq_prob and
# do_whole_word_mask (``bertdetr.bert.pretraining.create_pretraining_data.PretrainingDataConfig`` has them). The
# seed is not among them: the caller seeds the ``random.Random`` it passes in, and lower-casing is
# the tokenizer's.


@dataclasses.dataclass
class Instance:
    """One training example in words, before conversion to ids."""

    tokens: list  # [CLS] A [SEP] B [SEP], with the masks applied
    segment_ids: list  # 0 over [CLS] A [SEP], 1 over B [SEP]
    is_random_next: bool  # True when B was taken from another place, not A's continuation
    masked_positions: list  # ascending
    masked_labels: list  # the original token at each masked position


# --- 1. reading -----------------------------------------------------------------------------------

def read_documents(path, tokenize: Callable[[str], list]) -> list:
    """The corpus at ``path`` as documents, each a list of sentences, each a list of word pieces.

    Lines are split at ``\\n`` only (``str.splitlines`` would also split at ``\\x0b``, ``\\x1c``,
    ``\\u2028`` and others, which Google's reader keeps inside a line). Every ``\\r`` is removed,
    as TensorFlow's line reader does; invalid UTF-8 is dropped. A line is blank when ``str.strip``
    leaves nothing of it.
    """
    with open(path, "rb") as f:
        text = f.read().replace(b"\r", b"").decode("utf-8", "ignore")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the empty rest after a final newline is not a line

    documents = [[]]
    for line in lines:
        line = line.strip()
        if not line:
            documents.append([])  # a blank line starts a new document
            continue
        pieces = tokenize(line)
        if pieces:
            documents[-1].append(pieces)
    return [document for document in documents if document]


# --- 3. pairs -------------------------------------------------------------------------------------

def choose_target_length(max_pair_tokens: int, short_seq_prob: float, rng) -> int:
    """How many tokens the pairs of one document aim for (one draw per document per pass).

    Usually the most that fits; with probability ``short_seq_prob`` a random length in
    ``[2, max_pair_tokens]`` instead, so the model also sees short inputs, as in fine-tuning.
    """
    if rng.random() < short_seq_prob:
        return rng.randint(2, max_pair_tokens)
    return max_pair_tokens


def flatten(sentences) -> list:
    return [piece for sentence in sentences for piece in sentence]


def sentences_from_other_document(documents, own_index: int, wanted_length: int, rng) -> list:
    """Segment B of a "random next" pair: sentences of a random document from a random start.

    The document is drawn until it differs from ``own_index``, at most 10 times; after 10 misses
    the last draw stands (so a one-document corpus takes B from the document itself). From a
    random sentence on, whole sentences are taken until B holds ``wanted_length`` tokens or the
    document ends; at least one sentence is always taken, even when ``wanted_length`` <= 0.
    """
    draws = 0
    while True:
        other_index = rng.randint(0, len(documents) - 1)
        draws += 1
        if other_index != own_index or draws == 10:
            break
    other = documents[other_index]
    first = rng.randint(0, len(other) - 1)
    taken = []
    for sentence in other[first:]:
        taken.extend(sentence)
        if len(taken) >= wanted_length:
            break
    return taken


def pairs_of_document(documents, index: int, target_length: int, rng):
    """Yields (A, B, is_random_next) for document ``index``, as lists of word pieces.

    This is a generator, and the random stream is shared: the caller must finish all its draws
    for one pair (trimming, masking) before asking for the next, which is what Google's loop does.

    The document is cut into chunks of consecutive sentences: a chunk grows sentence by sentence
    until it holds ``target_length`` tokens or the document ends. A chunk is split at a random
    sentence boundary into A and the rest. With one sentence in the chunk, or else on a coin flip,
    B comes from another document, and the rest of the chunk is not used: the next chunk starts
    right after A, so those sentences get another chance. Otherwise B is the rest of the chunk.
    """
    document = documents[index]
    start = 0
    while start < len(document):
        # Grow the chunk [start, end).
        end = start
        length = 0
        while end < len(document):
            length += len(document[end])
            end += 1
            if length >= target_length:
                break
        chunk = document[start:end]

        # A gets the first `cut` sentences; a one-sentence chunk has no boundary to draw.
        cut = 1 if len(chunk) == 1 else rng.randint(1, len(chunk) - 1)
        tokens_a = flatten(chunk[:cut])

        # `or` short-circuits: a one-sentence chunk draws no coin.
        if len(chunk) == 1 or rng.random() < 0.5:
            tokens_b = sentences_from_other_document(
                documents, index, target_length - len(tokens_a), rng)
            yield tokens_a, tokens_b, True
            start += cut  # the sentences after A were not used: begin the next chunk with them
        else:
            yield tokens_a, flatten(chunk[cut:]), False
            start = end


def trim_pair(tokens_a: list, tokens_b: list, max_pair_tokens: int, rng) -> None:
    """Shortens A and B in place, one token at a time, until together they fit.

    Each step takes a token off the longer of the two (B when they are equal length), from its
    start or its end on a coin flip, so that neither end of the text is favoured.
    """
    while len(tokens_a) + len(tokens_b) > max_pair_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            longer.pop(0)
        else:
            longer.pop()


# --- 3. masking -----------------------------------------------------------------------------------

def masking_candidates(tokens: list, whole_words: bool) -> list:
    """Positions that may be masked, grouped into units that are masked together.

    Every position but those of ``[CLS]`` and ``[SEP]`` is a candidate (tested on the token
    string). Without whole-word masking each position is its own unit. With it, a ``##`` piece
    joins the unit before it, whichever that is: the special tokens are skipped, not unit
    boundaries, so a ``##`` piece that opens B joins the last word of A. A ``##`` piece with no unit
    before it starts its own.
    """
    units = []
    for position, token in enumerate(tokens):
        if token in (CLS, SEP):
            continue
        if whole_words and units and token.startswith("##"):
            units[-1].append(position)
        else:
            units.append([position])
    return units


def mask_pair(tokens: list, flags, vocab_words: list, rng):
    """Chooses and applies the masks of one instance.

    Returns (masked tokens, masked positions ascending, original tokens at those positions).

    The number to mask is ``masked_lm_prob`` of all tokens (``[CLS]``/``[SEP]`` counted; Python's
    ``round``, halves to even), at least 1, at most ``max_predictions_per_seq``. The units are
    shuffled and taken in that order; a unit that would overshoot the number is passed over (a
    later, shorter one may still fit) and the walk stops once the number is reached. Each chosen
    position, in the order chosen, draws its fate: 80% ``[MASK]``; else on a coin flip it keeps
    its token or gets a random vocabulary word (any entry, special tokens included).
    """
    units = masking_candidates(tokens, flags.do_whole_word_mask)
    rng.shuffle(units)
    wanted = min(flags.max_predictions_per_seq,
                 max(1, int(round(len(tokens) * flags.masked_lm_prob))))

    output = list(tokens)
    chosen = []  # (position, original token)
    for unit in units:
        if len(chosen) >= wanted:
            break
        if len(chosen) + len(unit) > wanted:
            continue
        # (Units never share a position, so no position can be chosen twice.)
        for position in unit:
            if rng.random() < 0.8:
                output[position] = MASK
            elif rng.random() < 0.5:
                pass  # keep the token, but still predict it
            else:
                output[position] = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            chosen.append((position, tokens[position]))

    chosen.sort()
    return output, [p for p, _ in chosen], [label for _, label in chosen]


# --- the whole run --------------------------------------------------------------------------------

def create_instances(documents: list, flags, vocab_words: list, rng) -> list:
    """Steps 2 to 4 on read documents: every instance of every pass, shuffled at the end.

    ``documents`` is not modified (its shuffled order is a copy).
    """
    documents = list(documents)
    rng.shuffle(documents)
    max_pair_tokens = flags.max_seq_length - 3  # room for [CLS], [SEP], [SEP]

    instances = []
    for _ in range(flags.dupe_factor):
        for index in range(len(documents)):
            target_length = choose_target_length(max_pair_tokens, flags.short_seq_prob, rng)
            for tokens_a, tokens_b, is_random_next in pairs_of_document(
                    documents, index, target_length, rng):
                trim_pair(tokens_a, tokens_b, max_pair_tokens, rng)
                assert tokens_a and tokens_b  # the longer one is trimmed: both keep a token
                tokens = [CLS, *tokens_a, SEP, *tokens_b, SEP]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                masked, positions, labels = mask_pair(tokens, flags, vocab_words, rng)
                instances.append(Instance(masked, segment_ids, is_random_next, positions, labels))
    rng.shuffle(instances)
    return instances


def to_features(instance: Instance, vocab: dict, flags) -> dict:
    """The record of one instance as lists: what a decoded ``tf.train.Example`` holds.

    Token features are zero-padded to ``max_seq_length``, prediction features to
    ``max_predictions_per_seq`` (weights 1.0 for a real prediction, 0.0 for padding).
    """
    def padded(values, size):
        return values + [0] * (size - len(values))

    n_tokens, n_masked = len(instance.tokens), len(instance.masked_positions)
    length, predictions = flags.max_seq_length, flags.max_predictions_per_seq
    return {
        "input_ids": padded([vocab[t] for t in instance.tokens], length),
        "input_mask": padded([1] * n_tokens, length),
        "segment_ids": padded(list(instance.segment_ids), length),
        "masked_lm_positions": padded(list(instance.masked_positions), predictions),
        "masked_lm_ids": padded([vocab[t] for t in instance.masked_labels], predictions),
        "masked_lm_weights": [1.0] * n_masked + [0.0] * (predictions - n_masked),
        "next_sentence_labels": [1 if instance.is_random_next else 0],
    }


def make_records(path, tokenizer, flags, rng) -> list:
    """The decoded records of a run on one input file, in output order.

    ``tokenizer`` needs ``tokenize(text) -> list of pieces`` and ``vocab`` (token -> id, in file
    order); lower-casing is the tokenizer's business. ``rng`` is a ``random.Random`` seeded with
    the run's seed, left where the run leaves it. With several output files, record ``k`` goes to
    file ``k % number of files``.
    """
    documents = read_documents(path, tokenizer.tokenize)
    vocab_words = list(tokenizer.vocab)  # random replacements are drawn by position in the vocab
    instances = create_instances(documents, flags, vocab_words, rng)
    return [to_features(instance, tokenizer.vocab, flags) for instance in instances]


# --- generated inputs -----------------------------------------------------------------------------

# Words for generated corpora: common words, words the bert-base-uncased vocab splits into "##"
# pieces (several per word), cased and accented words (lower-casing changes their pieces),
# punctuation and CJK characters (split into single pieces), bracketed specials (not specials once
# tokenized), and a 250-letter word ([UNK]: longer than the tokenizer's 200-character limit).
CORPUS_WORDS = (
    "the a of and to in is was it that cat sat on mat dog ran far away . , ; ! ?".split()
    + ["unaffable", "tokenization", "hyperparameters", "antidisestablishmentarianism",
       "electroencephalography", "playfulness", "reconstructing", "embeddings", "wordpiece",
       "Tübingen", "Straße", "naïve", "CAFÉ", "Paris", "東京", "don't", "3.14159", "(e.g.",
       "[MASK]", "[SEP]", "hyper-parameters", "x" * 250]
)

# Lines that end a document: empty, or only characters str.strip removes (the separators
# \x1c and \u2028 among them), or only "\r" (which the reader removes).
BLANK_LINES = ["", "", "", "   ", "\t", "\x1c", "\u2028 ", "\x85", "\r", "\u3000"]
IN_LINE_CHARACTERS = ["\r", "\x0b", "\x1c", "\u2028", "\x85", "\u00a0", "\x0c"]


def generated_corpus(rng, num_documents: int) -> str:
    """Text of ``num_documents`` random documents, in the input format, drawn from ``rng``.

    Made to reach the corner cases: one-sentence documents, sentences of a single word and very
    long ones (longer than any ``max_seq_length`` tried, so truncation takes many steps), runs of
    blank and whitespace-only lines between documents and at the start, lines that are not blank
    but have no word pieces (control characters: they do not end a document), characters that
    other line readers would break lines at, and a final line with or without its newline.
    """
    lines = []
    if rng.random() < 0.3:
        lines.append("")  # a leading blank line: an empty first document, dropped
    for _ in range(num_documents):
        num_sentences = 1 if rng.random() < 0.25 else rng.randint(2, 8)
        for _ in range(num_sentences):
            if rng.random() < 0.06:
                num_words = rng.randint(100, 300)
            else:
                num_words = rng.randint(1, 25)
            words = [rng.choice(CORPUS_WORDS) for _ in range(num_words)]
            if rng.random() < 0.1:
                # A character that is no line break in the input format, inside a word: "\r" is
                # removed by the reader, the others are kept or split by the tokenizer.
                k = rng.randrange(num_words)
                words[k] = rng.choice(IN_LINE_CHARACTERS).join([words[k], rng.choice(CORPUS_WORDS)])
            lines.append(" ".join(words))
            if rng.random() < 0.05:
                lines.append("\x01\x02")  # control characters only (a NUL would make the file "not text")
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            lines.append(rng.choice(BLANK_LINES))
    text = "\n".join(lines)
    return text if rng.random() < 0.2 else text + "\n"


# --- checking this reference against Google's script ----------------------------------------------

def _against_google(google_python: str, runs: int, seed: int) -> int:
    """Runs Google's script (``bert-tensorflow``, which has no whole-word masking flag) on
    generated corpora with random flags and compares its records with ours; returns the number of
    runs that differ."""
    import os
    import random
    import subprocess
    import sys
    import tempfile
    import types

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import reference_tokenization
    from bertdetr.bert.data.records import iter_examples

    vocab_file = os.path.join(os.path.dirname(here), "tests", "data", "bert", "vocab-uncased.txt")
    vocab = reference_tokenization.load_vocab(vocab_file)
    draw = random.Random(seed)
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        for run in range(runs):
            flags = {"max_seq_length": draw.choice([8, 12, 20, 48, 128]),
                     "max_predictions_per_seq": draw.choice([1, 3, 20]),
                     "dupe_factor": draw.randint(1, 3),
                     "masked_lm_prob": draw.choice([0.0, 0.125, 0.15, 0.5, 1.0]),
                     "short_seq_prob": draw.choice([0.0, 0.1, 0.5]),
                     "do_lower_case": draw.random() < 0.7,
                     "random_seed": draw.randint(0, 10**6)}
            text = os.path.join(work, f"in{run}.txt")
            with open(text, "w", encoding="utf-8") as f:
                f.write(generated_corpus(draw, draw.randint(1, 8)))
            out = os.path.join(work, f"google{run}.tfrecord")
            subprocess.run(
                [google_python, "-m", "bert.create_pretraining_data", f"--input_file={text}",
                 f"--output_file={out}", f"--vocab_file={vocab_file}",
                 *(f"--{name}={value}" for name, value in flags.items())],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            theirs = [{k: v.tolist() for k, v in r.items()} for r in iter_examples(out)]
            tokenizer = reference_tokenization.FullTokenizer(None, flags["do_lower_case"], vocab=vocab)
            ours = make_records(text, tokenizer, types.SimpleNamespace(do_whole_word_mask=False, **flags),
                                random.Random(flags["random_seed"]))
            same = ours == theirs
            failures += not same
            print(f"run {run}: {flags}: "
                  f"{len(theirs)} records, {'equal' if same else 'DIFFERENT'}")
    return failures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Compare this reference with Google's create_pretraining_data.py on generated "
                    "corpora (run with PYTHONPATH=src from the repository root).")
    parser.add_argument("--google-python", required=True,
                        help="a Python with tensorflow and bert-tensorflow==1.0.4 installed")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    raise SystemExit(1 if _against_google(args.google_python, args.runs, args.seed) else 0)

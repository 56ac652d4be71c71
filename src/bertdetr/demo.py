"""``bertdetr demo``: the main job on the embedded default corpus, no download needed.

Today: build a WordPiece vocab from the bundled public-domain corpus, tokenize it, make
pretraining data (TFRecords as Google's create_pretraining_data.py) and print a summary. Each
capability of the project adds its step here.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import resources


def bundled_corpus() -> str:
    """Path of the bundled corpus (Google BERT's ``sample_text.txt``, public domain, Gutenberg)."""
    return str(resources.files("bertdetr") / "data" / "sample_text.txt")


def add_parser(systems) -> None:
    p = systems.add_parser("demo", help="run the main job on the bundled corpus (no download)")
    p.add_argument("--out", default="demo_out", help="folder for the demo's outputs (default demo_out)")
    p.add_argument("--vocab-size", type=int, default=800, help="vocab size learned from the corpus")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertdetr.bert.tokenization import FullTokenizer
    from bertdetr.bert.vocab import VocabConfig, build_vocab

    os.makedirs(args.out, exist_ok=True)
    corpus = bundled_corpus()
    vocab_file = os.path.join(args.out, "vocab.txt")
    t0 = time.perf_counter()
    tokens = build_vocab([corpus], vocab_file, VocabConfig(vocab_size=args.vocab_size, num_unused=10))
    print(f"[1] vocab: {len(tokens)} entries learned from {corpus} -> {vocab_file} "
          f"({time.perf_counter() - t0:.1f}s)")

    tokenizer = FullTokenizer(vocab_file, do_lower_case=True)
    with open(corpus, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    pieces = [tokenizer.tokenize(line) for line in lines]
    n_pieces = sum(len(p) for p in pieces)
    n_unk = sum(p.count("[UNK]") for p in pieces)
    print(f"[2] tokenized {len(lines)} sentences into {n_pieces} pieces ({n_unk} [UNK]); first:")
    print("    " + " ".join(pieces[0][:24]))

    make_data(corpus, vocab_file, args.out, tokenizer)
    return 0


def make_data(corpus: str, vocab_file: str, out: str, tokenizer) -> None:
    """Step: pretraining data (Google's create_pretraining_data.py) from the corpus and the vocab,
    then one record decoded back into words."""
    from bertdetr.bert.pretraining_data import PretrainingDataConfig, describe_example, make_pretraining_data
    from bertdetr.bert.records import iter_examples

    t0 = time.perf_counter()
    output = os.path.join(out, "pretraining.tfrecord")
    config = PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=5)
    summary = make_pretraining_data([corpus], output, vocab_file, config)
    print(f"[3] pretraining data: {summary.documents} documents, {summary.tokens} tokens -> "
          f"{summary.instances} instances (NSP pairs, masked LM) -> {output} "
          f"({time.perf_counter() - t0:.1f}s)")
    words = describe_example(next(iter_examples(output)), tokenizer.inv_vocab)
    nsp = "random next" if words["is_random_next"] else "actual next"
    print(f"    first record ({nsp}): " + " ".join(words["tokens"]))
    print("    masked targets: " + ", ".join(f"{pos}:{token}" for pos, token in words["masked"]))

"""``bertdetr demo``: the main job on the embedded default corpus, no download needed.

Today: build a WordPiece vocab from the bundled public-domain corpus, tokenize it, and print a
summary. Each capability of the project adds its step here.
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
    return 0

"""``bertdetr bert ...`` subcommands: options in, typed configs and plain arguments out."""

from __future__ import annotations

import argparse


def add_subcommands(commands: argparse._SubParsersAction) -> None:
    _add_build_vocab(commands)


def _add_build_vocab(commands) -> None:
    p = commands.add_parser(
        "build-vocab",
        help="train a WordPiece vocab.txt in Google's layout",
        description="Train a WordPiece vocabulary on text files and write vocab.txt in Google's "
        "layout ([PAD], [unused*], [UNK], [CLS], [SEP], [MASK], pieces).",
    )
    p.add_argument("--input-file", "--input_file", dest="input_file", action="append", required=True,
                   help="text file(s) or globs, comma-separated or repeated")
    p.add_argument("--output", "--vocab-file", "--vocab_file", dest="output", required=True,
                   help="vocab.txt to write")
    p.add_argument("--vocab-size", "--vocab_size", dest="vocab_size", type=int, default=30522)
    case = p.add_mutually_exclusive_group()
    case.add_argument("--lowercase", dest="do_lower_case", action="store_true", default=True,
                      help="lowercase and strip accents (uncased model; the default)")
    case.add_argument("--cased", dest="do_lower_case", action="store_false",
                      help="keep case and accents (cased model)")
    p.add_argument("--num-unused", "--num_unused", dest="num_unused", type=int, default=99,
                   help="[unused*] slots reserved before [UNK] (default 99, as bert-base)")
    p.add_argument("--min-frequency", "--min_frequency", dest="min_frequency", type=int, default=2)
    p.add_argument("--limit-alphabet", "--limit_alphabet", dest="limit_alphabet", type=int, default=1000)
    p.set_defaults(func=_run_build_vocab)


def _run_build_vocab(args) -> int:
    from bertdetr.bert.vocab import VocabConfig, build_vocab

    config = VocabConfig(
        vocab_size=args.vocab_size,
        do_lower_case=args.do_lower_case,
        num_unused=args.num_unused,
        min_frequency=args.min_frequency,
        limit_alphabet=args.limit_alphabet,
    )
    tokens = build_vocab(args.input_file, args.output, config)
    note = "" if len(tokens) == config.vocab_size else f" (corpus too small for {config.vocab_size})"
    print(f"wrote {args.output}: {len(tokens)} entries{note}")
    return 0

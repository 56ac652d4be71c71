"""Masked-LM accuracy against steps: a longer pretraining run of the demo's tiny BERT on the bundled
public-domain books (real text, 533 KB), evaluated on held-out chapters every ``--eval-every``
steps. Not a test: it writes the curve as a PNG and prints a table for BENCHMARKS.md.

    python bench/bench_pretrain_curve.py --steps 10000 --eval-every 500 --out /tmp/bert_curve \
        --png bench/results/bert_pretrain_curve.png
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bertdetr.bert.model import BertConfig
from bertdetr.bert.pretraining.pretrain import PretrainConfig, pretrain
from bertdetr.bert.pretraining.make_data import make_pretraining_data
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.bert.data.vocab import VocabConfig, build_vocab
from bertdetr.demo import _split_documents, bundled_books
from bertdetr.training.scalars import plot_curves, read_scalars


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--out", default="/tmp/bert_curve")
    ap.add_argument("--png", default="bench/results/bert_pretrain_curve.png")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    train_txt, held_txt = _split_documents(bundled_books(), args.out)
    vocab = os.path.join(args.out, "vocab.txt")
    tokens = build_vocab([train_txt], vocab, VocabConfig(vocab_size=3000, num_unused=10))
    train_rec, held_rec = os.path.join(args.out, "train.tfrecord"), os.path.join(args.out, "heldout.tfrecord")
    make_pretraining_data([train_txt], train_rec, vocab, PretrainingDataConfig(
        max_seq_length=64, max_predictions_per_seq=10, dupe_factor=5, random_seed=0))
    make_pretraining_data([held_txt], held_rec, vocab, PretrainingDataConfig(
        max_seq_length=64, max_predictions_per_seq=10, dupe_factor=1, random_seed=1))
    model = BertConfig(vocab_size=len(tokens), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=512, max_position_embeddings=64)
    run = os.path.join(args.out, "run")
    t0 = time.perf_counter()
    summary = pretrain(PretrainConfig(
        input_files=[train_rec], output_dir=run, model=model, vocab_file=vocab, eval_files=[held_rec],
        batch_size=32, num_train_steps=args.steps, num_warmup_steps=args.steps // 10, learning_rate=1e-3, seed=0,
        save_every=args.steps, log_every=50, eval_every=args.eval_every, progress=False, overwrite=True))
    seconds = time.perf_counter() - t0
    series = read_scalars(os.path.join(run, "scalars.csv"))
    base = series["eval_masked_lm_frequency_baseline"][-1][1]
    print(f"# {args.steps} steps of 32 sequences in {seconds:.0f}s; frequency baseline {base:.3f}")
    print("| step | held-out masked-LM accuracy | held-out masked-LM loss | next-sentence accuracy |")
    print("|---|---|---|---|")
    acc = dict(series["eval_masked_lm_accuracy"])
    loss = dict(series["eval_masked_lm_loss"])
    nsp = dict(series["eval_next_sentence_accuracy"])
    for step in sorted(acc):
        print(f"| {step} | {acc[step]:.3f} | {loss[step]:.3f} | {nsp[step]:.3f} |")
    plot_curves(os.path.join(run, "scalars.csv"), args.png,
                ["eval_masked_lm_accuracy", "eval_masked_lm_loss", "masked_lm_loss", "eval_next_sentence_accuracy"],
                title=f"tiny BERT on bundled books (frequency baseline {base:.3f})")
    print(f"# final: {summary['eval']}")


if __name__ == "__main__":
    main()

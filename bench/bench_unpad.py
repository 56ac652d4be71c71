"""``bert pretrain --unpad`` against the padded step on real records of ``make-data
--max-seq-length 512`` (the bundled books, bert-base-uncased's vocabulary): the training step
(forward, losses, backward, clipping, Google's optimizer) on the same batches, alternating padded
and unpadded, medians; and the share of padding in those batches.

    python bench/bench_unpad.py [--model-size mini] [--batch 8] [--steps 6] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from bertdetr.bert.optimization import clip_and_update, create_optimizer
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.bert.pretraining.dataset import PretrainingStream, inspect_records
from bertdetr.bert.pretraining.make_data import make_pretraining_data
from bertdetr.bert.pretraining.pretrain import model_preset
from bertdetr.bert.model import build_bert_for_pretraining

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOKS = os.path.join(ROOT, "src", "bertdetr", "data", "pd_books.txt")
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-size", default="mini")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        records = os.path.join(tmp, "books_512.tfrecord")
        make_pretraining_data([BOOKS], records, VOCAB, PretrainingDataConfig(max_seq_length=512,
                                                                             max_predictions_per_seq=80, dupe_factor=1))
        shape = inspect_records([records])
        stream = iter(PretrainingStream([records], args.batch, 0, shape, unpad=True))
        batches = [next(stream) for _ in range(args.steps)]
    real = sum(int(b["input_mask"].sum()) if "input_mask" in b else b["input_ids"].numel() for b in batches)
    padding = 1 - real / sum(b["input_ids"].numel() for b in batches)
    config = model_preset(args.model_size, vocab_size=30522)
    torch.manual_seed(0)
    model = build_bert_for_pretraining(config)
    optimizer, _ = create_optimizer(model, 1e-4, 1000, 10)

    def step(batch):
        out = model(**batch)
        out["loss"].backward()
        optimizer.prepare()
        clip_and_update(optimizer, out["loss"].detach().reshape(1), 1.0)
        optimizer.zero_grad()

    plain = [{k: v for k, v in b.items() if k != "token_index"} for b in batches]
    times: dict[str, list[float]] = {"padded": [], "unpadded": []}
    step(plain[0])  # warm-up
    for _ in range(args.repeats):
        for name, data in (("padded", plain), ("unpadded", batches)):
            t0 = time.perf_counter()
            for b in data:
                step(b)
            times[name].append((time.perf_counter() - t0) / len(data))
    a, b = statistics.median(times["padded"]), statistics.median(times["unpadded"])
    print(f"torch {torch.__version__}, {args.threads} thread(s), BERT-{args.model_size}, batch {args.batch} x 512, "
          f"{len(batches)} batches, padding {padding:.1%}")
    print(f"| padded step | unpadded step | unpadded faster |\n|---|---|---|\n| {a * 1e3:.0f} ms | {b * 1e3:.0f} ms | "
          f"{a / b:.2f}x |")


if __name__ == "__main__":
    main()

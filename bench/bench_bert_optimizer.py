"""Google's optimizer step (global-norm clipping + ``AdamWeightDecay``, or LAMB) per tensor against
the flat buffers (``create_optimizer(flat=...)``): operators run per step, a ``_foreach_`` operator
counted once per tensor of its list (what it launches on a CPU, and in proportion on a GPU), and
the time of clip + step on the CPU, alternating the two layouts, medians of the best repeat.

    python bench/bench_bert_optimizer.py [--sizes tiny,small,base] [--lamb] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
from bertdetr.bert.optimization import clip_by_global_norm, create_optimizer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.kernel_count import CountOps  # noqa: E402  (the tests' counter)

SIZES = {
    "tiny": dict(vocab_size=2000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "small": dict(vocab_size=30522, hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "base": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072),
}


def setup(size: str, flat: bool, lamb: bool):
    torch.manual_seed(0)
    model = build_bert_for_pretraining(BertConfig(**SIZES[size]))
    optimizer, _ = create_optimizer(model, 1e-4, 1000, 10, lamb=lamb, flat=flat)
    ids = torch.randint(0, 2000, (8, 64))
    model(input_ids=ids, masked_lm_positions=torch.randint(0, 64, (8, 5)), masked_lm_ids=ids[:, :5],
          masked_lm_weights=torch.ones(8, 5), next_sentence_labels=torch.zeros(8, 1, dtype=torch.long))["loss"].backward()
    return model, optimizer


def opt_step(optimizer) -> None:
    clip_by_global_norm(optimizer.flat_parameters(), 1.0)
    optimizer.step(skip=torch.tensor(False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,small,base")
    ap.add_argument("--lamb", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {'LAMB' if args.lamb else 'AdamWeightDecay'}")
    print("| model | parameter tensors | operators per step, per tensor / flat | clip + step ms, per tensor / flat | speed-up |")
    print("|---|---|---|---|---|")
    for size in args.sizes.split(","):
        ops, times = {}, {False: [], True: []}
        for _ in range(args.repeats):
            for flat in (False, True):
                model, optimizer = setup(size, flat, args.lamb)
                opt_step(optimizer)  # the flat buffers are made at the first step
                with CountOps() as counter:
                    opt_step(optimizer)
                ops[flat] = counter.count
                ts = []
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    opt_step(optimizer)
                    ts.append(time.perf_counter() - t0)
                times[flat].append(sorted(ts)[len(ts) // 2])
        n = len(list(model.parameters()))
        a, b = min(times[False]) * 1e3, min(times[True]) * 1e3
        print(f"| {size} | {n} | {ops[False]} / {ops[True]} | {a:.2f} / {b:.2f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

"""Time of the DETR criterion (matching + losses of every decoder layer) and its backward.

Random outputs of L decoder layers for B images of Q queries; each image holds 1..max_objects
targets (the demo: 4 classes, 10 queries, up to 3 objects; COCO-like: 80 classes, 100 queries, up
to 20 objects). Targets stay on the host, as the DataLoader gives them. Prints the median over
``--repeats`` of ``criterion(outputs, targets)`` + ``backward`` per configuration.

    PYTHONPATH=src python bench/bench_detr_criterion.py [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bertdetr.detr.loss import DETRCriterion
from bertdetr.detr.matcher import HungarianMatcher


def make_inputs(L, B, Q, C, max_objects, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = [{"pred_logits": torch.randn(B, Q, C + 1, generator=g).to(device).requires_grad_(),
               "pred_boxes": (torch.rand(B, Q, 4, generator=g) * 0.5 + 0.25).to(device).requires_grad_()}
              for _ in range(L)]
    outputs = {**layers[-1], "aux_outputs": layers[:-1]}
    H, W = 112, 112
    targets = []
    for _ in range(B):
        n = int(torch.randint(1, max_objects + 1, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([W / 2, H / 2])
        wh = torch.rand(n, 2, generator=g) * torch.tensor([W / 2, H / 2]) + 1
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, C, (n,), generator=g),
                        "size": torch.tensor([H, W])})
    return outputs, targets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for L, B, Q, C, max_objects in [(2, 8, 10, 4, 3), (6, 8, 10, 4, 3), (2, 8, 100, 80, 20), (6, 8, 100, 80, 20)]:
        criterion = DETRCriterion(HungarianMatcher(1.0, 5.0, 2.0), C).to(dev)
        outputs, targets = make_inputs(L, B, Q, C, max_objects, dev)
        times = []
        for r in range(args.repeats + 3):
            sync()
            t0 = time.perf_counter()
            losses = criterion(outputs, targets)
            criterion.total(losses).backward()
            sync()
            if r >= 3:  # warm-up
                times.append(time.perf_counter() - t0)
        print(f"L={L} B={B} Q={Q} C={C} objects<={max_objects}: {statistics.median(times) * 1e3:.2f} ms "
              f"(min {min(times) * 1e3:.2f})")


if __name__ == "__main__":
    main()

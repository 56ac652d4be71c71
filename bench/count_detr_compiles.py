"""Graphs compiled by ``detr train --compile`` over batches of changing size: the model compiled as
``detr.train.compile_detr`` does it, and (``--plain``) with the stem's own max pool, on batches of
two whose sizes come from ``detr train``'s augmentation (official DETR's: flip, multi-scale resize
480..800 or resize + crop + resize, longer side at most 1333) of COCO's image shapes, padded as
``collate`` pads them. Forward and backward of the summed outputs, one thread pair, random weights.

    python bench/count_detr_compiles.py                       # inductor, R18, 8 batches
    python bench/count_detr_compiles.py --plain --backend aot_eager --steps 12
    PYTHONPATH=src $VENV/bin/python bench/count_detr_compiles.py   # another torch (a venv of its own)

Prints per batch its size, the graphs compiled so far and the seconds it took.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

COCO_SHAPES = ((480, 640), (640, 480), (427, 640), (640, 427), (640, 640), (375, 500))  # (H, W)


def batch_sizes(steps: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(h1, w1, h2, w2) of ``steps`` batches of two: the augmented sizes of random COCO shapes."""
    from bertdetr.detr.data.transforms import train_transforms

    transforms, rng, sizes = train_transforms(normalize=False), random.Random(seed), []
    for _ in range(steps):
        pair = []
        for _ in range(2):
            h, w = rng.choice(COCO_SHAPES)
            target = {"boxes": torch.tensor([[10.0, 10.0, 100.0, 100.0]]), "labels": torch.tensor([0]),
                      "size": torch.tensor([h, w]), "orig_size": torch.tensor([h, w]), "image_id": 0}
            image, _ = transforms(np.zeros((h, w, 3), np.uint8), target, rng)
            pair += list(image.shape[1:])
        sizes.append(tuple(pair))
    return sizes


def main() -> None:
    from torch._dynamo.utils import counters

    from bertdetr.detr.config import BackboneConfig, DETRConfig
    from bertdetr.detr.data.coco import padding_masks
    from bertdetr.detr.model import build_detr, max_pool_guards_parity
    from bertdetr.detr.train import compile_detr

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=18, help="ResNet depth")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: no code generation)")
    ap.add_argument("--plain", action="store_true", help="compile the model as it is (the stem's own max pool)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_detr(DETRConfig(backbone=BackboneConfig(depth=args.depth)).with_num_classes(80)).train()
    real = torch.compile
    torch.compile = lambda fn, mode=None, **kw: real(fn, backend=args.backend, **kw)  # compile_detr's call
    net = torch.compile(model) if args.plain else compile_detr(model, "default")
    print(f"torch {torch.__version__}, backend {args.backend}, R{args.depth}, "
          f"{'plain pool' if args.plain else 'compile_detr'} ({type(model.backbone.maxpool).__name__}; "
          f"this torch guards a strided pool's parity: {max_pool_guards_parity()})", flush=True)
    for step, (h1, w1, h2, w2) in enumerate(batch_sizes(args.steps)):
        H, W = max(h1, h2), max(w1, w2)
        images = torch.randn(2, 3, H, W).contiguous(memory_format=torch.channels_last)
        masks = padding_masks([(h1, w1), (h2, w2)], (H, W))
        start = time.perf_counter()
        out = net(images, masks if bool(masks.any()) else None)
        (out["pred_logits"].sum() + out["pred_boxes"].sum()).backward()
        print(f"batch {step}: {H}x{W} (parities of the stem pool's input {((H - 1) // 2 + 1) % 2}"
              f"{((W - 1) // 2 + 1) % 2}), graphs so far {counters['stats']['unique_graphs']}, "
              f"{time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()

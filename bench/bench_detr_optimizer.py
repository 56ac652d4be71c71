"""The DETR trainer's AdamW on CPU: torch's default per-parameter loop against ``foreach`` and
``fused`` (what ``detr.train.build_optimizer`` uses), side by side in one run, on the demo's tiny
DETR (``bertdetr.demo.detr_demo_setup``: quarter-width ResNet-18, 2+2 layers of width 64) and
batches of its synthetic shapes. Whole training steps (forward, criterion, backward, clip, step),
wall and CPU milliseconds per step, 1 and 2 threads.

    python bench/bench_detr_optimizer.py [--steps 20] [--threads 1 2]

The same run also prints what a second thread buys (wall ratio) and costs (CPU ratio), which is
why ``bertdetr demo`` runs its two halves side by side with one thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


LOOP = "loop (torch's CPU default)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting (after 3 warm-up steps)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure")
    args = ap.parse_args()

    import torch

    from bertdetr.demo import detr_demo_setup, make_demo_shapes
    from bertdetr.detr.data.coco import CocoDetection, collate, load_coco
    from bertdetr.detr.loss import build_criterion
    from bertdetr.detr.model import build_detr
    from bertdetr.detr.train_config import load_train_setup
    from bertdetr.detr.data.transforms import train_transforms

    work = tempfile.mkdtemp(prefix="bench_detr_opt_")
    make_demo_shapes(os.path.join(work, "shapes"), 8 * (args.steps + 3), 0)
    with open(os.path.join(work, "cfg.json"), "w") as f:
        json.dump(detr_demo_setup(1, 0), f)
    setup = load_train_setup(os.path.join(work, "cfg.json"))
    d = setup.data
    index = load_coco(d.train_ann, d.train_images)
    dataset = CocoDetection(index, train_transforms(d.train_scales, d.max_size, d.crop_resize, tuple(d.crop_size)),
                            seed=0)
    batches = [collate([dataset[i] for i in range(b * 8, b * 8 + 8)]) for b in range(args.steps + 3)]
    config = setup.model.with_num_classes(index.num_classes)

    print(f"torch {torch.__version__}; the demo's DETR, batches of 8 images (the first padded to "
          f"{'x'.join(map(str, batches[0]['images'].shape[2:]))})")
    results: dict[tuple[int, str], tuple[float, float]] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for variant, kwargs in ((LOOP, {"foreach": False}), ("foreach", {"foreach": True}),
                                ("fused (ours)", {"fused": True})):
            torch.manual_seed(0)
            model = build_detr(config).train()
            criterion = build_criterion(config)
            optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=1e-4, **kwargs)

            def step(batch):
                terms = criterion(model(batch["images"], batch["masks"]), batch["targets"])
                criterion.total(terms).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            for batch in batches[:3]:
                step(batch)
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in batches[3:]:
                step(batch)
            n = len(batches) - 3
            results[(threads, variant)] = ((time.perf_counter() - wall) / n * 1e3, (time.process_time() - cpu) / n * 1e3)
            w, c = results[(threads, variant)]
            loop = results[(threads, LOOP)][0]
            print(f"threads {threads}  {variant:28s} {w:6.1f} ms/step wall  {c:6.1f} ms CPU  ({loop / w:.2f}x the loop)")
    if 1 in args.threads and 2 in args.threads:
        one, two = results[(1, "fused (ours)")], results[(2, "fused (ours)")]
        print(f"fused, 2 threads against 1: {one[0] / two[0]:.2f}x faster, {two[1] / one[1]:.2f}x the CPU time")


if __name__ == "__main__":
    main()

"""DETR from Python as transformers' users call it: ``bertdetr.detr.pipeline("object-detection")``
against ``transformers.pipeline("object-detection")`` on the same model (CPU).

    python bench/bench_detr_pipeline.py [--preset r50] [--images 12] [--threads 2] [--repeats 3] [--device cuda]

One DETR of ``--preset`` with random weights (the backbone's BN statistics as initialised) is
saved as our folder with official DETR's test pipeline (PIL resize to 800, longer side at most
1333) and exported with ``detr export --format hf`` (transformers' ``DetrForObjectDetection`` and
``DetrImageProcessor`` at the same scale); each pipeline then reads the same ``--images`` photos
(cycling the bundled test photos of ``tests/data/detr/pipeline``: 512x512 and 300x451 JPEGs, a
grey PNG, an RGBA PNG; a path each call, one image at a time as transformers' default), threshold 0 so that every
query is compared (labels equal, scores within 1e-3, boxes within a pixel) before any time counts.
Times: best of ``--repeats`` passes over all images, sides alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PHOTOS = os.path.join(os.path.dirname(HERE), "tests", "data", "detr", "pipeline")


def agree(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x["label"] == y["label"] and abs(x["score"] - y["score"]) <= 1e-3
        and all(abs(x["box"][k] - y["box"][k]) <= 1 for k in x["box"]) for x, y in zip(a, b))


def save_folders(preset: str, tmp: str) -> tuple[str, str]:
    """A random DETR of ``preset`` (torch.manual_seed(0)) as our folder (official DETR's test
    pipeline at 800/1333) and as transformers' (``export_hf``): their paths under ``tmp``."""
    from bertdetr.detr import DETRConfig, build_detr
    from bertdetr.detr.convert.export import export_hf
    from bertdetr.detr.weights import save_classes, save_detr, save_pipeline

    torch.manual_seed(0)
    config = getattr(DETRConfig, preset)()
    model = build_detr(config).eval()
    names = [f"class {i}" for i in range(config.bbox_head.num_classes)]
    ours_dir, hf_dir = os.path.join(tmp, "ours"), os.path.join(tmp, "hf")
    save_detr(model, config, ours_dir)
    save_classes(ours_dir, list(range(1, len(names) + 1)), names)
    save_pipeline(ours_dir, "official", 800, 1333)
    export_hf(model, config, names, hf_dir)
    return ours_dir, hf_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=["r50", "r18"], default="r50")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    sys.path.insert(0, HERE)
    from bench_pipelines import best_seconds  # (this folder: the same alternating best-of timer)

    from bertdetr.detr import pipeline

    photos = sorted(os.path.join(PHOTOS, n) for n in os.listdir(PHOTOS) if n.endswith((".jpg", ".png")))
    images = [photos[k % len(photos)] for k in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        ours_dir, hf_dir = save_folders(args.preset, tmp)
        sides = {"bertdetr": pipeline("object-detection", ours_dir, device=args.device, threshold=0.0),
                 "transformers": transformers.pipeline("object-detection", model=hf_dir, device=args.device,
                                                       threshold=0.0)}
        outputs = {name: [p(x) for x in images] for name, p in sides.items()}
        same = sum(agree(a, b) for a, b in zip(outputs["bertdetr"], outputs["transformers"]))
        best = best_seconds(sides, lambda p: [p(x) for x in images], args.repeats, args.device)
    print(json.dumps({"task": "object-detection", "preset": args.preset, "images": len(images), "threads": args.threads,
                      "device": args.device,
                      "agree": f"{same}/{len(images)}",
                      "bertdetr_images_per_s": round(len(images) / best["bertdetr"], 2),
                      "transformers_images_per_s": round(len(images) / best["transformers"], 2),
                      "ratio": round(best["transformers"] / best["bertdetr"], 2)}))


if __name__ == "__main__":
    main()

"""``bertdetr detr predict`` on a folder of photos against transformers' object-detection pipeline
over the same files, images per second through the whole job (decode, resize, model, detections).

    python bench/bench_detr_predict.py [--preset r50] [--images 16] [--batch-size 1] [--num-workers 0] \
        [--threads 2] [--repeats 2] [--device cpu|cuda]

One DETR of ``--preset`` with random weights is saved as our folder (official DETR's PIL test
pipeline, shorter side 800, longer at most 1333) and exported with ``detr export --format hf``
(transformers' ``DetrForObjectDetection`` and ``DetrImageProcessor`` at the same scale). The
photos: ``--images`` JPEGs of 1600x1200 (a camera's size; the bundled test photos resized), so
that every batch has one size on both sides (transformers' pipeline stacks a batch's images as
they are). Rows, each best of ``--repeats``:

- ``transformers``: ``pipeline("object-detection", batch_size=B)`` over the paths (its
  ``num_workers`` as ours: a ``DataLoader`` decoding ahead).
- ``bertdetr``: ``predict_images(..., save_vis=False)`` (results.json only), batch ``B``, ``W``
  decoding workers; ``bertdetr+pictures``: the same writing a PNG per photo (drawn and saved on
  a thread beside the model), as the command does by default. Each pass of ours loads the model
  folder too, as the command does (transformers' pipeline is built once): few images understate
  ours.
- ``decode``: the loader alone (our decoding and resizing of every photo with ``W`` workers),
  the rate it can feed a model.

Detections are compared first: ours batched against ours one at a time (every result equal to
1e-4; in bf16 both batched and single are bf16). The two sides' post-processing differ by design (mmdet's top-100 over query x class for
``results.json``; transformers' official per-query), so their outputs are not compared here
(``bench_detr_pipeline.py`` compares the pipelines' own).
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


def make_photos(folder: str, count: int) -> list[str]:
    from PIL import Image

    sources = sorted(os.path.join(PHOTOS, n) for n in os.listdir(PHOTOS) if n.endswith((".jpg", ".png")))
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k in range(count):
        image = Image.open(sources[k % len(sources)]).convert("RGB").resize((1600, 1200), Image.BILINEAR)
        paths.append(os.path.join(folder, f"photo_{k:04d}.jpg"))
        image.save(paths[-1], quality=90)
    return paths


def _same(a: str, b: str) -> bool:
    with open(a) as f, open(b) as g:
        x, y = json.load(f), json.load(g)
    return len(x) == len(y) and all(
        p["image_id"] == q["image_id"] and p["category_id"] == q["category_id"] and abs(p["score"] - q["score"]) <= 1e-4
        for p, q in zip(x, y))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=["r50", "r18"], default="r50")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="both sides: ours under autocast (--bf16), transformers' weights cast (its dtype=)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    sys.path.insert(0, HERE)
    from bench_detr_pipeline import save_folders  # (this folder: the same random model, both sides' folders)
    from bench_pipelines import best_seconds  # (the same alternating best-of timer)

    from bertdetr.detr.predict import ImageFiles, image_loader, predict_images

    B, W = args.batch_size, args.num_workers
    with tempfile.TemporaryDirectory() as tmp:
        ours_dir, hf_dir = save_folders(args.preset, tmp)
        paths = make_photos(os.path.join(tmp, "photos"), args.images)
        dtype = getattr(torch, args.dtype)
        theirs = transformers.pipeline("object-detection", model=hf_dir, device=args.device, batch_size=B,
                                       num_workers=W, dtype=dtype)

        def ours(out: str, save_vis: bool, batch_size: int = B, workers: int = W) -> None:
            predict_images(ours_dir, paths, os.path.join(tmp, out), threshold=0.5, device=args.device,
                           batch_size=batch_size, num_workers=workers, save_vis=save_vis, overwrite=True, dtype=dtype)

        def decode() -> None:
            for _ in image_loader(ImageFiles(paths, "official", 800, 1333, None, keep_image=False), W):
                pass

        ours("one", False, 1, 0)
        ours("batched", False)
        agree = _same(os.path.join(tmp, "one", "results.json"), os.path.join(tmp, "batched", "results.json"))
        sides = {"transformers": lambda: theirs(paths, threshold=0.5), "bertdetr": lambda: ours("a", False),
                 "bertdetr+pictures": lambda: ours("b", True), "decode": decode}
        for run in sides.values():  # one warm-up each (worker start, kernels)
            run()
        best = best_seconds(sides, lambda run: run(), args.repeats, args.device)
    rate = {name: round(args.images / s, 2) for name, s in best.items()}
    print(json.dumps({"task": "detr predict", "preset": args.preset, "images": args.images, "size": "1600x1200",
                      "batch_size": B, "num_workers": W, "threads": args.threads, "device": args.device, "dtype": args.dtype,
                      "batched_equals_one_at_a_time": agree, "images_per_s": rate,
                      "ratio_vs_transformers": round(best["transformers"] / best["bertdetr"], 2),
                      "ratio_with_pictures": round(best["transformers"] / best["bertdetr+pictures"], 2)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

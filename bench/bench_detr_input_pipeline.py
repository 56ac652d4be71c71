"""``detr train``'s input pipeline side by side with mmdet 3.3's DETR training pipeline, images per second per core.

    python -m venv --system-site-packages /work/venvs/mmdet
    /work/venvs/mmdet/bin/pip install mmengine mmdet==3.3.0 mmcv-lite==2.1.0 opencv-python-headless scikit-image
    # + the stand-in mmcv/_ext.py of tests/data/detr/make_pipeline_golden.py (BENCHMARKS.md)
    python bench/bench_detr_input_pipeline.py --mmdet-python /work/venvs/mmdet/bin/python [--repeat 5]

Photos: scikit-image's colour photographs (rocket, coffee, chelsea, astronaut, hubble_deep_field,
immunohistochemistry, retina, the left motorcycle of stereo_motorcycle), centre-cropped and
resized to COCO's sizes (640 on the longer side: 640x480, 480x640, 640x427, 427x640, 640x640),
JPEG quality 90, ten files; ``--images`` entries of a COCO json cycle through them, each with 7
random boxes of 3 classes (COCO's mean is 7.3). Or ``--photos DIR`` of your own JPEGs;
``--coco-bit-rate`` re-encodes them nearer COCO's bit rate (quality 95 with noise: 125 KB a photo
against 50-92 KB at quality 90; COCO's average about 160 KB).

What one DataLoader worker does for a batch of 2 (``--batches`` batches after 2 warm-up ones, the
same image order on every side), each side in its own process on one thread, the sides
alternating ``--repeat`` times:

- ours: ``detr train``'s ``TrainLoader`` DataLoader: ``CocoDetection`` (JPEG decoded by OpenCV,
  EXIF rule), ``train_transforms(normalize=False)`` (flip, multi-scale resize or resize + crop +
  resize with OpenCV's bilinear on uint8, official DETR's sizes) and ``collate`` (a padded uint8
  batch); the normalisation runs where the batch lands (the GPU), as mmdet's;
- ours, pil: the same with ``data.image_backend`` "pil" (PIL's decode and bilinear);
- before: the pipeline before this change (``--before-src``, a checkout of it: PIL decode and
  resize, each image normalised to float32 in the worker, a float32 batch; its normalisation is
  in its worker already, so its ``+ norm.`` runs are the same);
- mmdet: mmdet 3.3's ``CocoDataset`` with ``configs/detr/detr_r50_8xb2-150e_coco.py``'s
  ``train_pipeline`` (LoadImageFromFile, LoadAnnotations, RandomFlip, RandomChoice of
  RandomChoiceResize / RandomChoiceResize + RandomCrop + RandomChoiceResize, PackDetInputs) and
  ``pseudo_collate``, as its worker runs it (``DetDataPreprocessor``'s normalisation and padding
  run on the GPU, in the main process).

Also timed (``+ norm. on CPU`` columns): the batch normalised on the CPU, as a CPU-only run does
in its main process: ours' ``BatchNormalizer(cpu)`` and mmdet's ``DetDataPreprocessor`` (its
config's mean, std, bgr_to_rgb, pad_size_divisor=1).

Reported: images per second by wall time and per CPU second (the process's user + system time
over the timed batches: robust to other work on the machine), medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from bench_input_pipeline import run  # (this folder: the same one-thread subprocess runner)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PHOTOS = r"""
import os, sys
import skimage.data as d
from PIL import Image
out = sys.argv[1]
specs = [("rocket", 640, 427), ("coffee", 640, 427), ("chelsea", 640, 426), ("astronaut", 640, 480),
         ("astronaut", 480, 640), ("hubble_deep_field", 480, 640), ("immunohistochemistry", 640, 480),
         ("motorcycle", 640, 429), ("retina", 640, 640), ("motorcycle", 427, 640)]
for i, (name, w, h) in enumerate(specs):
    a = (d.stereo_motorcycle()[0] if name == "motorcycle" else getattr(d, name)())[..., :3]
    H, W = a.shape[:2]
    if W / H > w / h:  # centre crop to w:h, then resize to w x h
        cw = round(H * w / h); a = a[:, (W - cw) // 2:(W - cw) // 2 + cw]
    else:
        ch = round(W * h / w); a = a[(H - ch) // 2:(H - ch) // 2 + ch]
    Image.fromarray(a).resize((w, h), Image.Resampling.LANCZOS).save(os.path.join(out, f"{i:02d}_{name}.jpg"), quality=90)
"""

COMMON = r"""
import json, os, sys, time
os.environ["OMP_NUM_THREADS"] = "1"
import cv2
cv2.setNumThreads(0)
import torch
torch.set_num_threads(1)
ann, images, order, batches, normalize = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"

def timed(loader, norm):
    it = iter(loader)
    for _ in range(2):
        norm(next(it))
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for _ in range(batches):
        n += norm(next(it))
    print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c, "images": n}))
"""

OURS = COMMON + r"""
from bertdetr.detr.data.coco import CocoDetection, collate, load_coco
from bertdetr.detr.data.transforms import train_transforms
variant = sys.argv[1]
if variant == "before":  # the code before (--before-src): PIL, each image normalised in the worker
    dataset = CocoDetection(load_coco(ann, images), train_transforms(), seed=0)
    batch_order = [order[k:k + 2] for k in range(0, len(order), 2)]
else:
    from bertdetr.detr.data.loader import BatchNormalizer
    dataset = CocoDetection(load_coco(ann, images), train_transforms(normalize=False), seed=0,
                            decode="opencv" if variant == "ours" else "pil")
    batch_order = [[(0, i) for i in order[k:k + 2]] for k in range(0, len(order), 2)]
    normalizer = BatchNormalizer(torch.device("cpu"))
loader = torch.utils.data.DataLoader(dataset, batch_sampler=batch_order, num_workers=0, collate_fn=collate)
def norm(batch):
    if normalize and variant != "before":
        batch = normalizer(batch)
    return len(batch["targets"])
timed(loader, norm)
"""

MMDET = COMMON + r"""
import glob
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmdet.registry import DATASETS, MODELS
from mmdet.utils import register_all_modules
register_all_modules()
import mmdet
cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", "detr", "detr_r50_8xb2-150e_coco.py"))
ds_cfg = cfg.train_dataloader.dataset
ds_cfg.update(data_root="", ann_file=ann, data_prefix=dict(img=images + "/"), metainfo=dict(classes=("c1", "c2", "c3")))
dataset = DATASETS.build(ds_cfg)
assert len(dataset) == len(order), (len(dataset), len(order))
batch_order = [order[k:k + 2] for k in range(0, len(order), 2)]
loader = torch.utils.data.DataLoader(dataset, batch_sampler=batch_order, num_workers=0, collate_fn=pseudo_collate)
pre = MODELS.build(cfg.model.data_preprocessor)
def norm(batch):
    if normalize:
        batch = pre(batch, True)
    return len(batch["inputs"])
timed(loader, norm)
"""

VARIANTS = ("ours", "pil", "mmdet", "before")


def make_data(folder: str, photos: str | None, mmdet_python: str, n: int, coco_bit_rate: bool) -> tuple[str, str]:
    """The photos (made unless given) and a COCO json of ``n`` entries cycling through them."""
    import random

    import numpy as np
    from PIL import Image

    if photos is None:
        photos = os.path.join(folder, "photos")
        os.makedirs(photos)
        subprocess.run([mmdet_python, "-c", PHOTOS, photos], check=True)
    names = sorted(f for f in os.listdir(photos) if f.lower().endswith((".jpg", ".jpeg")))
    if coco_bit_rate:  # sensor-like noise (sigma 4) and quality 95: about 125 KB a photo, near COCO's 160
        noisy = os.path.join(folder, "photos_coco_bit_rate")
        os.makedirs(noisy)
        for name in names:
            with Image.open(os.path.join(photos, name)) as im:
                a = np.asarray(im.convert("RGB")).astype(np.float64)
            a = np.clip(a + np.random.default_rng(0).normal(0, 4, a.shape), 0, 255).round().astype(np.uint8)
            Image.fromarray(a).save(os.path.join(noisy, name), quality=95)
        photos = noisy
    rng = random.Random(0)
    images, anns = [], []
    for i in range(n):
        name = names[i % len(names)]
        with Image.open(os.path.join(photos, name)) as im:
            w, h = im.size
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for _ in range(7):
            bw, bh = rng.uniform(10, w / 2), rng.uniform(10, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": rng.randint(1, 3),
                         "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)], "area": bw * bh, "iscrowd": 0})
    ann = os.path.join(folder, "train.json")
    with open(ann, "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)]}, f)
    return ann, photos


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mmdet-python", required=True, help="a Python with mmdet 3.3 (and scikit-image for the photos)")
    p.add_argument("--photos", help="a folder of JPEGs (default: scikit-image's photos at COCO's sizes)")
    p.add_argument("--images", type=int, default=200, help="entries of the COCO json (default 200)")
    p.add_argument("--coco-bit-rate", action="store_true",
                   help="the photos re-encoded at COCO's bit rate (noise sigma 4, quality 95: decoding weighs more)")
    p.add_argument("--batches", type=int, default=60, help="timed batches of 2 per run (default 60)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--normalize", action="store_true", help="also time the batch normalised on the CPU")
    p.add_argument("--before-src", help="the src/ folder of a checkout of the code before (e.g. git archive of "
                   "5195acd): its pipeline is timed too")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ann, photos = make_data(tmp, args.photos, args.mmdet_python, args.images, args.coco_bit_rate)
        import random

        order = list(range(args.images))
        random.Random(0).shuffle(order)
        results: dict[str, list] = {}
        for r in range(args.repeat):
            variants = VARIANTS if args.before_src else VARIANTS[:-1]
            for variant in (variants if r % 2 == 0 else variants[::-1]):
                for norm in ((False, True) if args.normalize and variant != "before" else (False,)):
                    common = [ann, photos, json.dumps(order), str(args.batches), "1" if norm else "0"]
                    key = variant + (" + norm. on CPU" if norm else "")
                    if variant == "mmdet":
                        results.setdefault(key, []).append(run(args.mmdet_python, MMDET, ["mmdet"] + common))
                    else:
                        results.setdefault(key, []).append(
                            run(sys.executable, OURS, [variant] + common,
                                args.before_src if variant == "before" else os.path.join(ROOT, "src")))
    row = {"images_per_run": 2 * args.batches, "repeats": args.repeat, "load_average": round(os.getloadavg()[0], 2)}
    for key, runs in results.items():
        n = runs[0]["images"]
        row[f"{key}: images/s"] = round(n / statistics.median(r["wall"] for r in runs), 1)
        row[f"{key}: images/CPU s"] = round(n / statistics.median(r["cpu"] for r in runs), 1)
    for key in results:
        if key.startswith("mmdet"):
            continue
        ref = "mmdet" + key[len(key.split(" ")[0]):]
        if ref not in results:
            ref = "mmdet"
        row[f"{key} / {ref} (wall)"] = round(row[f"{key}: images/s"] / row[f"{ref}: images/s"], 2)
        row[f"{key} / {ref} (CPU)"] = round(row[f"{key}: images/CPU s"] / row[f"{ref}: images/CPU s"], 2)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()

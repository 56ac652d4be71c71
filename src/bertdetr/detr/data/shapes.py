"""``bertdetr detr make-shapes``: a synthetic COCO-format detection dataset, for demos and tests.

Coloured shapes of several classes (circle, square, triangle, cross) on textured backgrounds
(gradients, stripes, noise), with sizes, counts, colours and positions varied. A shape's colour
says nothing of its class, so a detector has to learn shape. Writes ``<out>/images/*.png`` and one
COCO json per split; the json is written last, atomically, so a dataset whose json exists is whole.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from bertdetr.detr.boxes import box_iou
from bertdetr.errors import BertDetrError, require_field_types
from bertdetr.fileio import atomic_output

CLASSES = ("circle", "square", "triangle", "cross")


@dataclass
class ShapesConfig:
    num_images: int = 200
    """Images in the split."""
    min_size: int = 96
    """Smallest image side in pixels."""
    max_size: int = 160
    """Largest image side in pixels."""
    max_objects: int = 4
    """Each image holds 1..max_objects shapes."""
    min_object: float = 0.15
    """Smallest shape, as a fraction of the shorter image side."""
    max_object: float = 0.45
    """Largest shape, as a fraction of the shorter image side."""
    seed: int = 0
    """Seed of the generator (same seed, same dataset)."""
    class_colors: bool = False
    """Draw each class in its own hue (jittered in hue, saturation and brightness) instead of a random
    colour. With random colours only shape tells the classes apart, which a backbone trained from
    scratch takes thousands of iterations to learn; with class hues it tells them apart in a few
    hundred, so the demo's minutes go to learning where the objects are."""

    def __post_init__(self):
        require_field_types(self, "")
        if self.num_images < 1:
            raise BertDetrError(f"num_images must be >= 1, got {self.num_images}")
        if not 16 <= self.min_size <= self.max_size:
            raise BertDetrError(f"need 16 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.max_objects < 1:
            raise BertDetrError(f"max_objects must be >= 1, got {self.max_objects}")
        if not 0 < self.min_object <= self.max_object < 1:
            raise BertDetrError(f"need 0 < min_object <= max_object < 1, got {self.min_object}, {self.max_object}")


def _background(rng: random.Random, w: int, h: int) -> Image.Image:
    nrng = np.random.default_rng(rng.getrandbits(64))
    c0 = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    c1 = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / (w + h)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    if rng.random() < 0.5:  # stripes
        period = rng.uniform(6, 24)
        img += 25 * np.sin(2 * math.pi * (xx if rng.random() < 0.5 else yy) / period)[..., None]
    img += nrng.normal(0, rng.uniform(4, 20), size=img.shape)  # grain
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _draw(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, s: float, color) -> tuple[float, float, float, float]:
    """Draws one shape of size ``s`` centred at (cx, cy); returns its tight box (x1, y1, x2, y2)."""
    r = s / 2
    if kind == "circle":
        box = (cx - r, cy - r, cx + r, cy + r)
        draw.ellipse(box, fill=color)
        return box
    if kind == "square":
        box = (cx - r, cy - r, cx + r, cy + r)
        draw.rectangle(box, fill=color)
        return box
    if kind == "triangle":
        pts = [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
        draw.polygon(pts, fill=color)
        return (cx - r, cy - r, cx + r, cy + r)
    if kind == "cross":
        a = s / 6
        draw.rectangle((cx - r, cy - a, cx + r, cy + a), fill=color)
        draw.rectangle((cx - a, cy - r, cx + a, cy + r), fill=color)
        return (cx - r, cy - r, cx + r, cy + r)
    raise ValueError(kind)


# hues 90 degrees apart (red, chartreuse, cyan, violet), so no jitter brings two classes together
_CLASS_HUES = {"circle": 0.0, "square": 0.25, "triangle": 0.5, "cross": 0.75}


def _class_color(rng: random.Random, kind: str) -> tuple[int, int, int]:
    """A colour of ``kind``'s hue, +-0.05 of the hue circle, saturation 0.6-1, value 0.6-1."""
    import colorsys

    h = (_CLASS_HUES[kind] + rng.uniform(-0.05, 0.05)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def make_shapes(out_dir: str | os.PathLike, split: str, config: ShapesConfig) -> str:
    """Writes ``out_dir/images/<split>_*.png`` and ``out_dir/<split>.json``; returns the json path."""
    out_dir = os.fspath(out_dir)
    image_dir = os.path.join(out_dir, "images")
    try:
        os.makedirs(image_dir, exist_ok=True)
    except OSError as e:
        raise BertDetrError(f"cannot create {image_dir}: {e.strerror or e}") from None
    rng = random.Random(f"{config.seed}-{split}")
    images, annotations = [], []
    for i in range(config.num_images):
        w, h = rng.randint(config.min_size, config.max_size), rng.randint(config.min_size, config.max_size)
        image = _background(rng, w, h)
        draw = ImageDraw.Draw(image)
        placed: list[tuple[float, float, float, float]] = []
        for _ in range(rng.randint(1, config.max_objects)):
            for _attempt in range(20):  # avoid heavy overlap so every shape stays visible
                s = rng.uniform(config.min_object, config.max_object) * min(w, h)
                cx, cy = rng.uniform(s / 2, w - s / 2), rng.uniform(s / 2, h - s / 2)
                box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
                if not placed or box_iou(torch.tensor([box]), torch.tensor(placed)).max() < 0.2:
                    break
            else:
                continue
            kind = rng.choice(CLASSES)
            color = _class_color(rng, kind) if config.class_colors else tuple(rng.randint(0, 255) for _ in range(3))
            x1, y1, x2, y2 = _draw(draw, kind, cx, cy, s, color)
            placed.append((x1, y1, x2, y2))
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": CLASSES.index(kind) + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0,
            })
        file_name = f"{split}_{i:06d}.png"
        image.save(os.path.join(image_dir, file_name))
        images.append({"id": i + 1, "file_name": file_name, "width": w, "height": h})
    coco = {
        "info": {"description": f"bertdetr synthetic shapes, split {split}, seed {config.seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)],
    }
    path = os.path.join(out_dir, f"{split}.json")
    with atomic_output(path, "w") as f:
        json.dump(coco, f)
    return path


"""Pictures of what DETR sees: detections drawn on the image, attention maps as heat overlays."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def class_color(label: int) -> tuple[int, int, int]:
    """A distinct, stable colour per class (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: Image.Image, boxes, scores, labels, class_names: Sequence[str],
                    threshold: float = 0.0, min_side: int = 400) -> Image.Image:
    """A copy of ``image`` with each detection of score >= ``threshold`` drawn: its box in the
    class colour and a ``name score`` tag. ``boxes`` [K,4] pixel xyxy in this image. An image
    whose shorter side is under ``min_side`` is enlarged first (whole factors, nearest pixel), so
    that the tags of small images stay readable and apart."""
    out = image.convert("RGB")
    zoom = max(1, -(-min_side // max(1, min(out.size))))
    if zoom > 1:
        out = out.resize((out.width * zoom, out.height * zoom), Image.Resampling.NEAREST)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * zoom
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    width = max(1, round(min(out.size) / 200))
    order = np.argsort(np.asarray(scores, dtype=np.float64))  # strongest drawn last, on top
    for k in order:
        score = float(scores[k])
        if score < threshold:
            continue
        label = int(labels[k])
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        color = class_color(label)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        tag = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), tag, font=font)
        ty = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
        draw.rectangle((x1, ty, x1 + (right - left) + 4, ty + (bottom - top) + 2), fill=color)
        draw.text((x1 + 2, ty), tag, fill=(0, 0, 0), font=font)
    return out


def overlay_heatmap(image: Image.Image, heat: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """``heat`` [h, w] (any scale, any size) resized to the image and blended in as a red-yellow map."""
    heat = np.asarray(heat, dtype=np.float32)
    heat = (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-12)
    heat_img = Image.fromarray((heat * 255).astype(np.uint8), "L").resize(image.size, Image.Resampling.BILINEAR)
    h = np.asarray(heat_img, dtype=np.float32)[..., None] / 255.0
    colored = np.concatenate([np.ones_like(h), h, np.zeros_like(h)], axis=-1) * 255  # red -> yellow
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    mix = base * (1 - alpha * h) + colored * (alpha * h)
    return Image.fromarray(np.clip(mix, 0, 255).astype(np.uint8), "RGB")

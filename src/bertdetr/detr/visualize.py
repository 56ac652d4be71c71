"""Pictures of what DETR sees: detections drawn on the image, attention maps as heat overlays."""

from __future__ import annotations

import colorsys
import functools
import os
import shutil
import subprocess
import warnings
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bertdetr.errors import BertDetrError

CJK_FONT_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",     # Debian, Ubuntu: fonts-noto-cjk
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",          # Arch: noto-fonts-cjk
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",   # Fedora: google-noto-sans-cjk-fonts
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",             # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",               # fonts-wqy-zenhei
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
    "/System/Library/Fonts/PingFang.ttc",                         # macOS
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/msyh.ttc",                                  # Windows: Microsoft YaHei
    "C:/Windows/Fonts/simhei.ttf",
)
"""Where CJK fonts are installed by the usual packages, looked at in order (then fontconfig's list)."""

TAG_FONT_SIZE = 14
"""Pixel size of tags in a CJK or given font (PIL's default font is 10: Latin letters are legible
at that size, Chinese characters' strokes need about 14)."""


def class_color(label: int) -> tuple[int, int, int]:
    """A distinct, stable colour per class (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: Image.Image, boxes, scores, labels, class_names: Sequence[str],
                    threshold: float = 0.0, min_side: int = 400, font: str | os.PathLike | None = None,
                    max_side: int = 4000) -> Image.Image:
    """A copy of ``image`` with each detection of score >= ``threshold`` drawn: its box in the
    class colour and a ``name score`` tag (in ``tag_font``; ``font``: a font file of your own).
    ``boxes`` [K,4] pixel xyxy in this image. An image whose shorter side is under ``min_side``
    is enlarged first (whole factors, nearest pixel), so that the tags of small images stay
    readable and apart, as far as its longer side stays within ``max_side`` (a 3000x40 strip is
    not made 30000 pixels long)."""
    out = image.convert("RGB")
    zoom = max(1, min(-(-min_side // max(1, min(out.size))), max_side // max(out.size)))
    if zoom > 1:
        out = out.resize((out.width * zoom, out.height * zoom), Image.Resampling.NEAREST)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * zoom
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(out.size) / 200))
    order = [k for k in np.argsort(np.asarray(scores, dtype=np.float64)).tolist()  # strongest drawn last, on top
             if float(scores[k]) >= threshold]
    names = [class_names[int(labels[k])] if 0 <= int(labels[k]) < len(class_names) else str(int(labels[k]))
             for k in order]
    tags = [f"{name} {float(scores[k]):.2f}" for name, k in zip(names, order)]
    font = tag_font(tags, font)
    for k, tag in zip(order, tags):
        label = int(labels[k])
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        color = class_color(label)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        left, top, right, bottom = draw.textbbox((x1, y1), tag, font=font)
        ty = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
        draw.rectangle((x1, ty, x1 + (right - left) + 4, ty + (bottom - top) + 2), fill=color)
        draw.text((x1 + 2, ty), tag, fill=(0, 0, 0), font=font)
    return out


def needs_cjk_font(text: str) -> bool:
    """Whether ``text`` has characters of the CJK blocks (from U+2E80: radicals, kana, ideographs,
    Hangul, full-width forms), which PIL's default font draws as empty boxes."""
    return any(ord(c) >= 0x2E80 for c in text)


@functools.lru_cache(maxsize=None)
def find_cjk_font() -> str | None:
    """A CJK font file of this machine: the first of ``CJK_FONT_FILES`` that exists, else the first
    of fontconfig's fonts covering Chinese (``fc-list :lang=zh``); None when there is none."""
    for path in CJK_FONT_FILES:
        if os.path.isfile(path):
            return path
    if shutil.which("fc-list"):
        try:
            listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        files = sorted(line.split(":")[0].strip() for line in listed.splitlines() if line.strip())
        if files:
            return files[0]
    return None


def tag_font(tags: Sequence[str], font: str | os.PathLike | None = None):
    """The font the tags are drawn in: ``font`` (a .ttf/.otf/.ttc file) when given; PIL's default
    where no tag needs more (Latin class names: the pictures as they always were); for Chinese,
    Japanese or Korean class names a CJK font of this machine (``find_cjk_font``), as PIL's default
    has none of those characters. Without one, a warning says how to get one, and those
    characters are drawn as empty boxes."""
    if font is not None:
        try:
            return _truetype(os.fspath(font))
        except OSError as e:
            raise BertDetrError(f"cannot use {os.fspath(font)} as the pictures' font: {e}") from None
    if not any(needs_cjk_font(t) for t in tags):
        return ImageFont.load_default()
    found = find_cjk_font()
    if found is None:
        warnings.warn("class names in Chinese, Japanese or Korean are drawn as empty boxes: this machine has no "
                      "CJK font (looked for Noto Sans CJK, WenQuanYi, Droid Sans Fallback, PingFang, Microsoft YaHei "
                      "and fontconfig's list); install one (Debian/Ubuntu: apt install fonts-noto-cjk) or give a "
                      "font file (detr predict --font FILE)", stacklevel=3)
        return ImageFont.load_default()
    return _truetype(found)


@functools.lru_cache(maxsize=8)
def _truetype(path: str):
    """The font of ``path`` at ``TAG_FONT_SIZE``; of a collection (.ttc: Noto Sans CJK's JP, KR, SC,
    TC faces), its Simplified Chinese face where it has one, else its first."""
    if path.lower().endswith(".ttc"):
        for index in range(32):
            try:
                face = ImageFont.truetype(path, TAG_FONT_SIZE, index=index)
            except OSError:
                break
            if face.getname()[0].endswith((" SC", " GB")):
                return face
    return ImageFont.truetype(path, TAG_FONT_SIZE)


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

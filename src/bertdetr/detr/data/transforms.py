"""DETR's data augmentation as composable callables on ``(image, target, rng)``.

Each transform takes an image, a target dict and a ``random.Random`` (randomness is passed in,
never global) and returns the new ``(image, target)``. Boxes follow every geometric transform.

An image is a PIL image or a numpy uint8 [H,W,3] RGB array, and the interpolation goes with it:
PIL's bilinear for a PIL image (official DETR's, and the test pipelines'), OpenCV's ``INTER_LINEAR``
on the uint8 array for an array (mmdet's ``Resize``: ``mmcv.imresize``, cv2 back-end; the same
pixels for the same output size, tests/detr/data/test_transforms.py against mmdet's own output).
``detr train`` decodes to arrays (``data.image_backend`` "opencv", the default): OpenCV's resize
is 6x PIL's on photos and the array needs no conversion on its way to the batch. What each
resize is sized to stays official DETR's rule, ``resized_hw``: the longer side truncated where
mmdet's ``mmcv.rescale_size`` rounds it (a pixel apart at times), as before.

Target dict keys (M boxes): ``boxes`` float32 [M,4] absolute pixel (x1, y1, x2, y2) in the current
image; ``labels`` int64 [M]; ``size`` int64 [2] the current (h, w); other keys (``image_id``,
``orig_size``) pass through. Boxes stay in pixels: the model's criterion normalises them by
``size`` (as mmdet normalises by ``img_shape``), so padding never shifts them.

The pipelines are official DETR's ``make_coco_transforms`` (equal to mmdet's
``detr_r50_8xb2-150e_coco.py`` train pipeline): random flip, then either a multi-scale resize
(shorter side 480..800 step 32, longer side at most 1333) or resize to 400/500/600 + random crop of
384..600 + the multi-scale resize; test time: shorter side 800, longer at most 1333.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_SCALES = tuple(range(480, 801, 32))

Image_ = Image.Image | np.ndarray
"""A PIL image, or a numpy uint8 [H,W,3] RGB array (see the module docstring)."""
Transform = Callable[[Image_, dict, random.Random], tuple]


def image_wh(image: Image_) -> tuple[int, int]:
    """(width, height) of a PIL image or an [H,W,3] array."""
    if isinstance(image, np.ndarray):
        return image.shape[1], image.shape[0]
    return image.size


class Compose:
    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image, target, rng):
        for t in self.transforms:
            image, target = t(image, target, rng)
        return image, target


class RandomSelect:
    """Applies ``first`` with probability ``p``, else ``second`` (official DETR's RandomSelect)."""

    def __init__(self, first: Transform, second: Transform, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, image, target, rng):
        return (self.first if rng.random() < self.p else self.second)(image, target, rng)


def hflip(image: Image_, target: dict) -> tuple[Image_, dict]:
    """Mirror left-right; box x1' = w - x2, x2' = w - x1."""
    w = image_wh(image)[0]
    target = dict(target)
    boxes = target["boxes"]
    target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    if isinstance(image, np.ndarray):
        import cv2

        return cv2.flip(image, 1), target  # a copy: OpenCV takes no negative strides (a [:, ::-1] view)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), target


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, target, rng):
        if rng.random() < self.p:
            return hflip(image, target)
        return image, target


def resized_hw(w: int, h: int, size: int, max_size: int | None) -> tuple[int, int]:
    """(h, w) with the shorter side ``size`` and the longer at most ``max_size`` (official DETR's
    ``get_size_with_aspect_ratio``, including its int() truncation of the longer side)."""
    if max_size is not None:
        short, long = float(min(w, h)), float(max(w, h))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def resize_image(image: Image_, h: int, w: int) -> Image_:
    """``image`` resized to h x w: PIL's bilinear for a PIL image, OpenCV's ``INTER_LINEAR`` on
    uint8 for an array (what mmdet's ``Resize`` calls, ``mmcv.imresize(backend='cv2')``)."""
    if isinstance(image, np.ndarray):
        import cv2

        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return image.resize((w, h), Image.Resampling.BILINEAR)


def resize(image: Image_, target: dict, size: int, max_size: int | None) -> tuple[Image_, dict]:
    width, height = image_wh(image)
    h, w = resized_hw(width, height, size, max_size)
    if (h, w) == (height, width):
        return image, target
    sx, sy = w / width, h / height
    target = dict(target)
    target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    target["size"] = torch.tensor([h, w])
    return resize_image(image, h, w), target


class RandomResize:
    """Shorter side drawn from ``sizes``, longer side capped at ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None):
        self.sizes, self.max_size = list(sizes), max_size

    def __call__(self, image, target, rng):
        return resize(image, target, rng.choice(self.sizes), self.max_size)


def crop(image: Image_, target: dict, top: int, left: int, h: int, w: int) -> tuple[Image_, dict]:
    """Crops the region; boxes are shifted, clipped to it, and dropped when nothing is left."""
    target = dict(target)
    boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=torch.float32))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    for key in ("boxes", "labels"):
        target[key] = (boxes if key == "boxes" else target[key])[keep]
    target["size"] = torch.tensor([h, w])
    if isinstance(image, np.ndarray):
        return image[top:top + h, left:left + w], target  # a view: the next resize or the batch copies it
    return image.crop((left, top, left + w, top + h)), target


class RandomSizeCrop:
    """A crop of random height and width in [min_size, max_size] at a random place (official DETR).

    As official DETR (and mmdet's ``allow_negative_crop=True``), a crop may leave an image with
    no boxes; the criterion handles images without targets.
    """

    def __init__(self, min_size: int, max_size: int):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image, target, rng):
        width, height = image_wh(image)
        w = rng.randint(min(self.min_size, width), min(width, self.max_size))
        h = rng.randint(min(self.min_size, height), min(height, self.max_size))
        top = rng.randint(0, height - h)
        left = rng.randint(0, width - w)
        return crop(image, target, top, left, h, w)


def as_array(image: Image_) -> np.ndarray:
    """uint8 [H,W,3] RGB of a PIL RGB image or an array (the array itself)."""
    return image if isinstance(image, np.ndarray) else np.asarray(image, dtype=np.uint8)


def normalize_into(out: torch.Tensor, image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``out`` (float32 [3,h,w], any device) = (``image`` / 255 - mean) / std, ``image`` uint8
    [3,h,w] (any memory layout): each operation in float32 and in place, so the numbers equal
    ``(x.float() / 255 - mean) / std`` bit for bit, without the three temporaries (11 ms -> 2 ms
    for an 800x1066 image on one core)."""
    out.copy_(image)
    return out.div_(255.0).sub_(mean).div_(std)


class ToNormalizedTensor:
    """RGB (PIL or array) -> float32 [3,H,W] in [0,1], then (x - mean) / std (ImageNet statistics)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, image, target, rng):
        pixels = ToImageTensor()(image, target, rng)[0]
        return normalize_into(torch.empty(pixels.shape), pixels, self.mean, self.std), target


class ToImageTensor:
    """RGB (PIL or array) -> uint8 [3,H,W], a view of the [H,W,3] pixels (no copy, no
    normalisation): the training pipeline's last step. As mmdet's ``PackDetInputs`` hands
    ``DetDataPreprocessor`` uint8 images, the batch is normalised where it is used
    (``data.loader.normalize_batch``, on the GPU when training on one), after a copy a quarter of
    float32's size; ``collate`` pads these into a channels-last uint8 batch."""

    def __call__(self, image, target, rng):
        array = as_array(image)
        if not array.flags.writeable:  # np.asarray of a PIL image is read-only; torch wants to own writable memory
            array = array.copy()
        return torch.from_numpy(array).permute(2, 0, 1), target


def train_transforms(scales: Sequence[int] = TRAIN_SCALES, max_size: int = 1333,
                     crop_resize: Sequence[int] = (400, 500, 600), crop_size: tuple[int, int] = (384, 600),
                     normalize: bool = True) -> Compose:
    """Official DETR / mmdet DETR training augmentation (sizes configurable for small images);
    images come out normalised (float32 [3,H,W]), or with ``normalize=False`` as uint8 [3,H,W]
    for ``data.loader.normalize_batch`` (``detr train``)."""
    return Compose([
        RandomHorizontalFlip(),
        RandomSelect(
            RandomResize(scales, max_size=max_size),
            Compose([
                RandomResize(crop_resize),
                RandomSizeCrop(*crop_size),
                RandomResize(scales, max_size=max_size),
            ]),
        ),
        ToNormalizedTensor() if normalize else ToImageTensor(),
    ])


def eval_transforms(size: int = 800, max_size: int = 1333) -> Compose:
    """Evaluation: shorter side ``size``, longer at most ``max_size``, normalise."""
    return Compose([RandomResize([size], max_size=max_size), ToNormalizedTensor()])


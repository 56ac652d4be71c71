"""Test-time pipelines: an image file -> the model's input, as each reference prepares it.

A model gives the scores its reference gives only when fed the tensor its reference feeds it: the
references differ in how they decode, round and interpolate, enough to move scores by 1e-2 on real
photos (see BENCHMARKS.md, "DETR inference pipeline agreement with mmdet"). The pipelines:

- ``mmdet``: MMDetection 3.x's test pipeline, ``LoadImageFromFile`` -> ``Resize(scale=(1333, 800),
  keep_ratio=True)`` -> ``PackDetInputs`` -> ``DetDataPreprocessor``: OpenCV decodes (BGR; EXIF
  orientation, grey and alpha as ``mmcv.imfrombytes(flag='color')``, which calls
  ``cv2.imdecode(..., IMREAD_COLOR)`` as here); ``mmcv.imrescale`` keeps the ratio with the scale
  factor ``min(1333 / long side, 800 / short side)`` and *rounds* the new sides
  (``int(w * s + 0.5)``, ``mmcv.rescale_size``); OpenCV's bilinear (``INTER_LINEAR``) on the uint8
  BGR image; then BGR -> RGB, ``(x - mean) / std`` on the 0..255 scale. The default for models
  converted from mmdet.
- ``official``: facebookresearch/detr's ``T.RandomResize([800], max_size=1333)``, ``ToTensor``,
  ``Normalize``: PIL decodes with ``Image.open(path).convert('RGB')`` (no EXIF orientation, as its
  ``CocoDetection``), the shorter side to 800 with the longer side *truncated* (its
  ``get_size_with_aspect_ratio``), PIL's bilinear, ``x / 255`` then ImageNet mean/std. The default
  for official and transformers models.
- ``bertdetr``: the pipeline ``detr train`` evaluates with: ``official``'s resize and
  normalisation after ``data.load_image`` (EXIF orientation applied, 16-bit images scaled to 8
  bits). The default for models trained here. (Training resizes with OpenCV's bilinear by
  default, ``data.image_backend``: within one level of PIL's when enlarging, as on COCO's photos;
  PIL's smooths when shrinking, OpenCV's does not.)

Boxes go back to the original image by the pipeline's scale factor (w_scale, h_scale) = resized /
original side, as mmdet's ``rescale=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bertdetr.detr.data.coco import MAX_PIXELS, ImageLoadError, check_image_header, load_image, pil_pixel_limit, to_rgb
from bertdetr.detr.data.transforms import ToNormalizedTensor, resize
from bertdetr.errors import BertDetrError

PIPELINES = ("mmdet", "official", "bertdetr")
"""Names of the test-time pipelines (``--pipeline``)."""

MMDET_MEAN = (123.675, 116.28, 103.53)
"""mmdet's DetDataPreprocessor mean (RGB, 0..255 scale) = ImageNet's * 255."""
MMDET_STD = (58.395, 57.12, 57.375)
"""mmdet's DetDataPreprocessor std (RGB, 0..255 scale)."""

"""The file in our checkpoint directory naming the pipeline of the model's origin."""


@dataclass
class PreparedImage:
    """One image through a pipeline."""

    tensor: torch.Tensor
    """float32 [3,h,w], normalised RGB, unpadded."""
    scale_factor: tuple[float, float]
    """(w_scale, h_scale): resized over original width and height."""
    image: Image.Image | None
    """The decoded original as RGB, for pictures (None where they are not drawn)."""
    exif_unapplied: int = 1
    """The file's EXIF orientation where the pipeline does not apply it (``official``, as official
    DETR: 2..8 for a photo stored turned or mirrored), else 1: the detections are in the stored
    pixels' frame, not the one a viewer shows (``detr predict`` and ``detr eval`` say so)."""


def check_pipeline(name: str) -> str:
    if name not in PIPELINES:
        raise BertDetrError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    return name


# ------------------------------------------------------------------------------- mmdet


def mmcv_imread(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """uint8 [H,W,3] BGR, as mmcv 2.x ``LoadImageFromFile`` (``imfrombytes(flag='color')``, cv2
    back-end): OpenCV's ``IMREAD_COLOR`` applies the EXIF orientation, expands grey, drops alpha
    without compositing and reduces 16-bit to 8 bits."""
    import cv2

    path = os.fspath(path)
    check_image_header(path, max_pixels)
    with open(path, "rb") as f:
        content = np.frombuffer(f.read(), np.uint8)
    image = cv2.imdecode(content, cv2.IMREAD_COLOR) if content.size else None
    if image is None:
        raise ImageLoadError(f"cannot read image {path}: OpenCV cannot decode it")
    return image


def mmcv_rescale_size(w: int, h: int, scale: tuple[int, int] = (1333, 800)) -> tuple[tuple[int, int], float]:
    """``mmcv.rescale_size((w, h), scale, return_scale=True)`` -> ((new_w, new_h), factor): the
    largest factor fitting the long side in max(scale) and the short side in min(scale); new sides
    rounded half up (``int(x * factor + 0.5)``)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return (int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)), factor


def mmdet_prepare(bgr: np.ndarray, scale: tuple[int, int] = (1333, 800),
                  mean: Sequence[float] = MMDET_MEAN, std: Sequence[float] = MMDET_STD) -> tuple[torch.Tensor, tuple[float, float]]:
    """uint8 [H,W,3] BGR -> (float32 [3,h,w] normalised RGB, (w_scale, h_scale)): mmdet's
    ``Resize(keep_ratio=True)`` (``mmcv.imrescale``, cv2 ``INTER_LINEAR`` on uint8),
    ``PackDetInputs`` and ``DetDataPreprocessor(bgr_to_rgb=True)`` before padding."""
    import cv2

    h, w = bgr.shape[:2]
    (new_w, new_h), _ = mmcv_rescale_size(w, h, scale)
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(resized[:, :, ::-1].transpose(2, 0, 1))).float()
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    # mmengine computes (x - mean) / std on the 0..255 scale (not x / 255 first): kept for parity
    return (x - mean_t) / std_t, (new_w / w, new_h / h)


# ------------------------------------------------------------------------------- official DETR


def official_imread(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """``Image.open(path).convert('RGB')``, as official DETR's datasets and demo read images."""
    return _official_read(path, max_pixels)[0]


def _official_read(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> tuple[Image.Image, int]:
    """``official_imread``'s image and the EXIF orientation it leaves unapplied (1: none), read
    from the file already open (no second look at it)."""
    path = os.fspath(path)
    check_image_header(path, max_pixels)
    try:
        with pil_pixel_limit(max_pixels), Image.open(path) as raw:
            return raw.convert("RGB"), exif_orientation(raw)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"cannot read image {path}: {e}") from None


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of an open image (what ``ImageOps.exif_transpose`` reads): 1..8, 1
    where there is none or it is not one of them (a broken tag is not worth refusing the image for)."""
    try:
        turn = int(image.getexif().get(0x0112, 1))
    except (TypeError, ValueError, OSError, SyntaxError):
        return 1
    return turn if 1 <= turn <= 8 else 1


TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
"""EXIF orientations that turn a photo a quarter (or mirror it across a diagonal): width and height
swap once applied."""


def official_prepare(image: Image.Image, size: int = 800, max_size: int = 1333) -> tuple[torch.Tensor, tuple[float, float]]:
    """PIL RGB -> (float32 [3,h,w], (w_scale, h_scale)): official DETR's test transforms
    (``RandomResize([size], max_size)`` with PIL bilinear, ``ToTensor``, ``Normalize``)."""
    target = {"boxes": torch.zeros(0, 4), "size": torch.tensor([image.height, image.width])}
    resized, target = resize(image, target, size, max_size)  # the training code's resize = official's
    tensor, _ = ToNormalizedTensor()(resized, target, None)
    return tensor, (resized.width / image.width, resized.height / image.height)


# ------------------------------------------------------------------------------- any


def check_resizable(path, w: int, h: int, size: int, max_size: int, label: str | None = None) -> None:
    """``ImageLoadError`` (naming ``label``, default "image PATH") for a w x h image so thin that,
    resized to shorter side ``size`` with the longer at most ``max_size``, its shorter side would be
    under one pixel (a 10000x1 strip), or an empty one."""
    label = label or f"image {path}"
    if min(w, h) < 1:
        raise ImageLoadError(f"{label} is {w}x{h}: empty")
    if min(w, h) * min(size / min(w, h), max_size / max(w, h)) < 1:
        raise ImageLoadError(f"{label} is {w}x{h}: resized for the model (shorter side {size}, longer at most "
                             f"{max_size}) its shorter side would be under one pixel")


def prepare_image(path: str | os.PathLike, pipeline: str, size: int = 800, max_size: int = 1333,
                  max_pixels: int | None = MAX_PIXELS) -> PreparedImage:
    """An image file through ``pipeline`` (one of ``PIPELINES``) at shorter side ``size``, longer
    at most ``max_size`` (mmdet's ``scale=(max_size, size)``). Raises ``ImageLoadError`` for a file
    that cannot be read, one of more than ``max_pixels`` pixels, or one so thin that a side of it
    would be resized to nothing (a 10000x1 image)."""
    check_pipeline(pipeline)
    check_resizable(path, *check_image_header(os.fspath(path), max_pixels), size, max_size)
    if pipeline == "mmdet":
        bgr = mmcv_imread(path, max_pixels)
        tensor, scale = mmdet_prepare(bgr, (max_size, size))
        return PreparedImage(tensor, scale, Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])))
    if pipeline == "official":
        image, unapplied = _official_read(path, max_pixels)
    else:
        image, unapplied = load_image(os.fspath(path), max_pixels=max_pixels), 1
    tensor, scale = official_prepare(image, size, max_size)
    return PreparedImage(tensor, scale, image, unapplied)


def prepare_array(image, pipeline: str, size: int = 800, max_size: int = 1333, max_pixels: int | None = MAX_PIXELS,
                  name: str = "the image") -> PreparedImage:
    """An image already in memory through ``pipeline``: a numpy array uint8 [H,W,3] in BGR order
    (as ``cv2.imread`` and mmdet's ``inference_detector`` take it; [H,W,4] BGRA, its alpha dropped;
    [H,W] or [H,W,1] grey) or a PIL image.
    The same checks as ``prepare_image`` (``ImageLoadError`` naming ``name``)."""
    if isinstance(image, Image.Image):
        rgb = to_rgb(image)
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ImageLoadError(f"{name}: an image array must be uint8 [H, W, 3] (BGR), [H, W, 4] (BGRA), or "
                                 f"[H, W] or [H, W, 1] (grey), got {image.dtype} {list(image.shape)}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        bgr = np.repeat(image[:, :, None], 3, 2) if image.ndim == 2 else image[:, :, :3]
        bgr = np.ascontiguousarray(bgr)
        rgb = Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))
    else:
        raise ImageLoadError(f"{name}: not an image (a path, a numpy array or a PIL image), got {type(image).__name__}")
    h, w = bgr.shape[:2]
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(f"{name} has {w * h} pixels ({w}x{h}), more than the limit {max_pixels}")
    check_resizable(name, w, h, size, max_size, label=name)
    check_pipeline(pipeline)
    if pipeline == "mmdet":
        tensor, scale = mmdet_prepare(bgr, (max_size, size))
    else:
        tensor, scale = official_prepare(rgb, size, max_size)
    return PreparedImage(tensor, scale, rgb)


class PipelineDataset(torch.utils.data.Dataset):
    """The images of a ``CocoIndex`` through a pipeline, for evaluation: items are ``(tensor
    [3,h,w], target)`` with ``image_id``, ``size`` (h, w) resized and ``orig_size`` (h, w) decoded
    (``size / orig_size`` is the pipeline's scale factor) and ``exif_unapplied`` (``PreparedImage``'s),
    or None for an unreadable image (reported with a warning; ``collate`` drops it)."""

    def __init__(self, index, pipeline: str, size: int = 800, max_size: int = 1333):
        self.index, self.pipeline = index, check_pipeline(pipeline)
        self.size, self.max_size = size, max_size

    def __len__(self) -> int:
        return len(self.index.images)

    def __getitem__(self, i: int):
        import warnings

        info = self.index.images[i]
        try:
            prepared = prepare_image(os.path.join(self.index.image_dir, info["file_name"]), self.pipeline,
                                     self.size, self.max_size)
        except ImageLoadError as e:
            # (from here, not the caller: a DataLoader's fetch would be named, and the CLI's
            # one-line form of our warnings would not apply)
            warnings.warn(f"skipping image {info['id']}: {e}")
            return None
        h, w = prepared.tensor.shape[1:]
        return prepared.tensor, {"image_id": info["id"], "size": torch.tensor([h, w]),
                                 "orig_size": torch.tensor([prepared.image.height, prepared.image.width]),
                                 "exif_unapplied": prepared.exif_unapplied}


def batches_of_one_size(items: Iterable[tuple[int, PreparedImage | ImageLoadError]], batch_size: int,
                        max_waiting: int | None = None) -> Iterator[list[tuple[int, PreparedImage | ImageLoadError]]]:
    """Groups ``(index, prepared image)`` items into batches of up to ``batch_size`` images of one
    tensor size (photos of one camera are resized alike; mmdet groups by aspect ratio for the same
    reason). An image waits for others of its size; when ``max_waiting`` (default ``2 *
    batch_size``) wait, the largest group goes as it is, so memory stays bounded on images of
    many sizes. An ``ImageLoadError`` item comes through at once, alone. The rest come at the end."""
    max_waiting = max_waiting or 2 * batch_size
    waiting: dict[tuple, list] = {}
    count = 0
    for item in items:
        if isinstance(item[1], ImageLoadError):
            yield [item]
            continue
        group = waiting.setdefault(tuple(item[1].tensor.shape), [])
        group.append(item)
        count += 1
        if len(group) < batch_size and count < max_waiting:
            continue
        key = tuple(item[1].tensor.shape) if len(group) == batch_size else max(waiting, key=lambda k: len(waiting[k]))
        done = waiting.pop(key)
        count -= len(done)
        yield done
    yield from waiting.values()

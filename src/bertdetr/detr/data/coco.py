"""COCO-format detection data for DETR: annotation index, robust image loading, dataset, batching.

A dataset is an annotation json in COCO's format (``images``, ``annotations``, ``categories``) and
a folder of images. Category ids (COCO's are 1..90 with gaps) are mapped to contiguous labels
0..C-1 in ascending id order; the mapping travels with the checkpoint, so ``num_classes`` is read
from the dataset instead of set by hand.

Cleaning, each counted in ``CocoIndex.stats`` and reported:
- crowd annotations (``iscrowd=1``) are dropped, as official DETR and mmdet do for training;
- boxes partly outside their image are clipped to it;
- boxes with no area (zero or negative width/height, before or after clipping) are dropped;
- an annotation naming an image or category that does not exist is an error (a broken file).

Batch contract (B images, M_i boxes in image i, H/W the padded size):
``images`` float32 [B,3,H,W] normalised and zero-padded at the bottom/right (or, from items of
uint8 pixels as ``detr train``'s, uint8 [B,3,H,W] in channels-last memory, zero-padded, for
``data.loader.normalize_batch``), ``masks`` bool [B,H,W]
True at padding (mmdet's and DETR's convention), ``targets`` list of B dicts with ``boxes`` [M_i,4]
pixel xyxy in the resized image, ``labels`` [M_i], ``size`` (h, w) of the resized image before
padding, ``orig_size`` (h, w) as stored, ``image_id``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from bertdetr.errors import BertDetrError


class ImageLoadError(BertDetrError):
    """An image file that is missing or cannot be decoded."""


IMAGE_BACKENDS = ("opencv", "pil")
"""How training decodes and resizes (``data.image_backend``, ``CocoDetection(decode=...)``)."""


@dataclass
class CocoIndex:
    """A parsed, cleaned COCO annotation file."""

    image_dir: str
    """Folder the images' ``file_name`` are relative to."""
    images: list[dict]
    """Per image: ``id``, ``file_name``, ``width``, ``height``, ``boxes`` (float32 [M,4] xyxy), ``labels``."""
    category_ids: list[int]
    """COCO category id of each contiguous label (label i is ``category_ids[i]``)."""
    class_names: list[str]
    """Name of each contiguous label."""
    stats: dict[str, int] = field(default_factory=dict)
    """Counts of what cleaning did: ``crowd_dropped``, ``empty_dropped``, ``clipped``, ``boxes``."""

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def summary(self) -> str:
        s = self.stats
        return (f"{len(self.images)} images, {s['boxes']} boxes, {self.num_classes} classes; "
                f"dropped {s['crowd_dropped']} crowd and {s['empty_dropped']} zero-area boxes"
                + (f" and {s['non_finite_dropped']} with NaN or infinite coordinates" if s.get("non_finite_dropped")
                   else "") + f", clipped {s['clipped']} boxes to their image")

    def check_trainable(self, ann_file: str) -> None:
        """Raises ``BertDetrError`` when no box is left to learn from, saying what was dropped and why."""
        if self.stats["boxes"] == 0:
            raise BertDetrError(f"{ann_file}: no usable box to train on ({self.summary()})")


def field_of(obj: dict, key: str, where: str):
    """``obj[key]``; ``BertDetrError`` naming ``where`` when ``obj`` is not a JSON object with it."""
    if not isinstance(obj, dict):
        raise BertDetrError(f"{where} is {type(obj).__name__} {obj!r:.40}, not a JSON object")
    if key not in obj:
        raise BertDetrError(f"{where} has no '{key}' field")
    return obj[key]


def read_coco_json(ann_file: str | os.PathLike) -> dict:
    """The JSON object of a COCO annotation file; ``BertDetrError`` when it is missing, not JSON or
    not an object."""
    ann_file = os.fspath(ann_file)
    if not os.path.isfile(ann_file):
        raise BertDetrError(f"annotation file not found: {ann_file}")
    try:
        with open(ann_file, "rb") as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BertDetrError(f"{ann_file} is not valid JSON: {e}") from None
    if not isinstance(coco, dict):
        raise BertDetrError(f"{ann_file}: expected a JSON object with images/annotations/categories")
    return coco


def load_coco(ann_file: str | os.PathLike, image_dir: str | os.PathLike) -> CocoIndex:
    """Reads and cleans a COCO annotation file; raises ``BertDetrError`` on a broken file."""
    ann_file = os.fspath(ann_file)
    if not os.path.isfile(ann_file):
        raise BertDetrError(f"annotation file not found: {ann_file}")
    if not os.path.isdir(image_dir):
        raise BertDetrError(f"image folder not found: {image_dir}")
    coco = read_coco_json(ann_file)
    raw_images = field_of(coco, "images", ann_file)
    raw_anns = coco.get("annotations", [])
    raw_cats = field_of(coco, "categories", ann_file)
    if not raw_images:
        raise BertDetrError(f"{ann_file} has no images: an empty dataset cannot be trained or evaluated")
    if not raw_cats:
        raise BertDetrError(f"{ann_file} has no categories")

    cats = sorted(raw_cats, key=lambda c: field_of(c, "id", "a category"))
    category_ids = [int(c["id"]) for c in cats]
    if len(set(category_ids)) != len(category_ids):
        raise BertDetrError(f"{ann_file} has duplicate category ids")
    label_of = {cid: i for i, cid in enumerate(category_ids)}
    class_names = [str(c.get("name", c["id"])) for c in cats]

    images: dict[int, dict] = {}
    for im in raw_images:
        image_id = field_of(im, "id", "an image entry")
        if image_id in images:
            raise BertDetrError(f"{ann_file} has duplicate image id {image_id}")
        images[image_id] = {
            "id": image_id,
            "file_name": field_of(im, "file_name", f"image {image_id}"),
            "width": int(field_of(im, "width", f"image {image_id}")),
            "height": int(field_of(im, "height", f"image {image_id}")),
            "boxes": [],
            "labels": [],
        }

    kinds = sorted({type(i).__name__ for i in images})
    if len(kinds) > 1:  # (pycocotools sorts the ids: an int and a str do not compare)
        raise BertDetrError(f"{ann_file} mixes image ids of types {' and '.join(kinds)}: give every image an id "
                            "of one type (COCO's are integers)")
    stats = {"crowd_dropped": 0, "empty_dropped": 0, "non_finite_dropped": 0, "clipped": 0, "boxes": 0}
    for ann in raw_anns:
        ann_id = ann.get("id", "?")
        image = images.get(ann.get("image_id"))
        if image is None:
            raise BertDetrError(f"annotation {ann_id} refers to image id {ann.get('image_id')!r}, "
                                f"which is not in {ann_file}")
        if ann.get("category_id") not in label_of:
            raise BertDetrError(f"annotation {ann_id} has category id {ann.get('category_id')!r}, "
                                f"which is not among the categories of {ann_file}")
        if ann.get("iscrowd", 0):
            stats["crowd_dropped"] += 1
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise BertDetrError(f"annotation {ann_id} has bbox {bbox!r}; expected [x, y, width, height]")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            raise BertDetrError(f"annotation {ann_id} of {ann_file} has bbox {bbox!r}: four numbers expected") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)):  # NaN would pass every test below
            stats["non_finite_dropped"] += 1
            continue
        if not (w > 0 and h > 0):
            stats["empty_dropped"] += 1
            continue
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + w, float(image["width"])), min(y + h, float(image["height"]))
        if x2 <= x1 or y2 <= y1:
            stats["empty_dropped"] += 1
            continue
        if (x1, y1, x2, y2) != (x, y, x + w, y + h):
            stats["clipped"] += 1
        image["boxes"].append((x1, y1, x2, y2))
        image["labels"].append(label_of[ann["category_id"]])
        stats["boxes"] += 1

    out = []
    for image in images.values():
        image["boxes"] = np.asarray(image["boxes"], dtype=np.float32).reshape(-1, 4)
        image["labels"] = np.asarray(image["labels"], dtype=np.int64)
        out.append(image)
    return CocoIndex(os.fspath(image_dir), out, category_ids, class_names, stats)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: grayscale and palette expanded, alpha dropped (as OpenCV's
    ``imread`` in mmdet ignores it), CMYK converted, 16-bit scaled down to 8 bits (PIL's own
    conversion would clip 16-bit values at 255, turning most of the image white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        scale = 257.0 if array.max(initial=0) > 255 else 1.0
        gray = np.clip(array / scale, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


MAX_PIXELS = Image.MAX_IMAGE_PIXELS
"""The most pixels an image may have (PIL's own limit, 89,478,485: a 20000x20000 PNG is refused
before it is decoded, where OpenCV would spend 4.5 GB on it); ``--max-pixels`` of predict changes it."""


@contextlib.contextmanager
def pil_pixel_limit(max_pixels: int | None):
    """PIL's decompression-bomb limit set to ``max_pixels`` (None: none) for the block: PIL refuses
    twice its own limit when a file is opened, before our check with the user's limit could run."""
    before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def check_image_header(path: str, max_pixels: int | None = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an image file, read from its header alone; ``ImageLoadError`` for a missing
    or unreadable file, one of more than ``max_pixels`` pixels (None: no limit) or with an empty side."""
    if not os.path.isfile(path):
        raise ImageLoadError(f"image file not found: {path}")
    return _header(path, path, max_pixels)[:2]


def _header(source, path: str, max_pixels: int | None, orientation: bool = False) -> tuple[int, int, str, str, int]:
    """(width, height, format, mode, EXIF orientation (1 unless ``orientation`` asks for it))
    of ``source`` (a path or a binary file), with ``check_image_header``'s checks."""
    try:
        with pil_pixel_limit(None), Image.open(source) as raw:  # the check is ours, with our limit
            (w, h), fmt, mode = raw.size, raw.format, raw.mode
            turn = int(raw.getexif().get(0x0112, 1)) if orientation else 1  # what ImageOps.exif_transpose reads
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"cannot read image {path}: {e}") from None
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(f"image {path} is {w}x{h}, {w * h:,} pixels: more than the limit of {max_pixels:,} "
                             "(--max-pixels)")
    if w < 1 or h < 1:
        raise ImageLoadError(f"image {path} is {w}x{h}: empty")
    return w, h, fmt, mode, turn


def load_image(path: str, expected_wh: tuple[int, int] | None = None,
               max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Opens an image as 8-bit RGB, applying its EXIF orientation when that matches the annotation.

    Annotation tools disagree on EXIF-rotated photos: most annotate the image as displayed
    (rotated), some the stored pixels. When ``expected_wh`` (the annotation's width, height) is
    given, the orientation whose size matches it is used; otherwise the EXIF rotation is applied.
    """
    check_image_header(path, max_pixels)
    try:
        with pil_pixel_limit(max_pixels), Image.open(path) as raw:
            raw.load()
            rotated = ImageOps.exif_transpose(raw)
            if expected_wh is not None and rotated.size != tuple(expected_wh) and raw.size == tuple(expected_wh):
                rotated = raw.copy()  # annotated on the stored, unrotated pixels
            return to_rgb(rotated)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"cannot read image {path}: {e}") from None


# ImageOps.exif_transpose's transposes of the EXIF orientations 2..8, on an [H,W,C] array
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
           8: lambda a: np.rot90(a)}


def load_image_array(path: str, expected_wh: tuple[int, int] | None = None,
                     max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """``load_image`` as a uint8 [H,W,3] RGB array, the same pixels (tests): a whole baseline or
    progressive RGB or grey JPEG is decoded by OpenCV (libjpeg-turbo, as PIL's, straight into the
    array: 1.1 ms against PIL's 2.5 ms with its copy out, for a 640x480 photo; mmdet's
    ``LoadImageFromFile`` decodes with it too), its EXIF orientation applied by
    ``load_image``'s rule; anything else (PNG, CMYK, a file without its end marker, which OpenCV
    would fill with grey where PIL refuses it) goes through ``load_image``."""
    if not os.path.isfile(path):
        raise ImageLoadError(f"image file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    w, h, fmt, mode, turn = _header(io.BytesIO(data), path, max_pixels, orientation=True)
    array = None
    if fmt == "JPEG" and mode in ("RGB", "L") and data.rstrip(b"\0\n\r ").endswith(b"\xff\xd9"):
        import cv2

        rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10: libjpeg-turbo writes RGB itself
        array = cv2.imdecode(np.frombuffer(data, np.uint8), (cv2.IMREAD_COLOR if rgb is None else rgb)
                             | cv2.IMREAD_IGNORE_ORIENTATION)
        if rgb is None and array is not None:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array is None or array.shape[:2] != (h, w):
        return np.asarray(load_image(path, expected_wh, max_pixels))
    if turn in _ORIENT:
        shown = (h, w) if turn in (5, 6, 7, 8) else (w, h)  # (width, height) once turned
        if expected_wh is None or shown == tuple(expected_wh) or (w, h) != tuple(expected_wh):
            array = np.ascontiguousarray(_ORIENT[turn](array))
    return array


class CocoDetection(torch.utils.data.Dataset):
    """Items are ``(image [3,H,W], target)`` after ``transforms``, or None for an unreadable image
    when ``skip_bad_images`` (a warning is issued; ``collate`` drops None).

    Augmentation randomness is a ``random.Random`` seeded from (seed, epoch, index): the same item
    gets the same augmentation whatever the number of DataLoader workers, and resuming at an epoch
    reproduces it. An item is ``dataset[i]`` in the epoch of ``set_epoch``, or ``dataset[epoch, i]``
    (what ``data.loader``'s samplers hand persistent workers, whose copy of the dataset never sees
    ``set_epoch``).

    ``decode``: "pil" hands the transforms ``load_image``'s PIL image (PIL's bilinear resizes),
    "opencv" ``load_image_array``'s array, the same pixels (OpenCV's resizes, mmdet's).
    """

    def __init__(self, index: CocoIndex, transforms, seed: int = 0, skip_bad_images: bool = True,
                 decode: str = "pil"):
        if decode not in IMAGE_BACKENDS:
            raise BertDetrError(f"decode must be one of {', '.join(IMAGE_BACKENDS)}, got {decode!r}")
        self.index = index
        self.transforms = transforms
        self.seed = seed
        self.epoch = 0
        self.skip_bad_images = skip_bad_images
        self.decode = decode

    def __len__(self) -> int:
        return len(self.index.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, item: int | tuple[int, int]):
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        info = self.index.images[i]
        path = os.path.join(self.index.image_dir, info["file_name"])
        try:
            load = load_image_array if self.decode == "opencv" else load_image
            image = load(path, (info["width"], info["height"]))
        except ImageLoadError as e:
            if not self.skip_bad_images:
                raise
            # (from here, not the caller: a DataLoader's fetch would be named, and the CLI's
            # one-line form of our warnings would not apply)
            warnings.warn(f"skipping image {info['id']}: {e}")
            return None
        h, w = image.shape[:2] if isinstance(image, np.ndarray) else image.size[::-1]
        boxes = torch.from_numpy(info["boxes"].copy())
        if (w, h) != (info["width"], info["height"]):
            # The stored image differs in size from its annotation entry: rescale the boxes.
            boxes = boxes * torch.tensor([w / info["width"], h / info["height"]] * 2, dtype=torch.float32)
        target = {
            "image_id": info["id"],
            "boxes": boxes,
            "labels": torch.from_numpy(info["labels"].copy()),
            "orig_size": torch.tensor([h, w]),
            "size": torch.tensor([h, w]),
        }
        rng = random.Random(f"{self.seed}-{epoch}-{i}")
        return self.transforms(image, target, rng)


def check_images(index: CocoIndex, skip_bad_images: bool = True) -> tuple[CocoIndex, int]:
    """Checks every image file exists and has a readable header before training starts.

    Returns the index without the bad images and their count (with a warning for each), or raises
    ``ImageLoadError`` on the first one when not ``skip_bad_images``. Damage past the header is
    found when the image is decoded, by ``CocoDetection``.
    """
    good, bad = [], 0
    for info in index.images:
        path = os.path.join(index.image_dir, info["file_name"])
        problem = None
        if not os.path.isfile(path):
            problem = f"image file not found: {path}"
        else:
            try:
                with Image.open(path):  # parses the header only
                    pass
            except (UnidentifiedImageError, OSError) as e:
                problem = f"cannot read image {path}: {e}"
        if problem is not None:
            if not skip_bad_images:
                raise ImageLoadError(problem)
            warnings.warn(f"skipping image {info['id']}: {problem}", stacklevel=2)
            bad += 1
            continue
        good.append(info)
    if not good:
        raise BertDetrError(f"no readable images in {index.image_dir}")
    return CocoIndex(index.image_dir, good, index.category_ids, index.class_names, dict(index.stats)), bad


def padding_masks(img_shapes: list[tuple[int, int]], batch_hw: tuple[int, int], device=None) -> torch.Tensor:
    """Per-image (h, w) inside a padded (H, W) batch -> [B,H,W] bool, True outside each image (mmdet)."""
    H, W = batch_hw
    masks = torch.ones(len(img_shapes), H, W, dtype=torch.bool, device=device)
    for i, (h, w) in enumerate(img_shapes):
        masks[i, :h, :w] = False
    return masks


def collate(batch: list, size_divisor: int = 1) -> dict | None:
    """Pads images to the largest (rounded up to ``size_divisor``) and builds the padding mask.

    ``None`` items (skipped images) are dropped; a batch with nothing left gives None. Float
    images give a float32 batch; uint8 ones (``ToImageTensor``'s views of [H,W,3] pixels) a uint8
    batch in channels-last memory, so each image is one plain copy (0.07 ms for 800x1066; a
    transposing copy into [3,H,W] planes takes 1.4 ms).
    """
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    H = max(img.shape[1] for img, _ in batch)
    W = max(img.shape[2] for img, _ in batch)
    H = -(-H // size_divisor) * size_divisor
    W = -(-W // size_divisor) * size_divisor
    if batch[0][0].dtype == torch.uint8:
        images = torch.zeros(len(batch), H, W, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
    else:
        images = torch.zeros(len(batch), 3, H, W)
    for i, (img, _) in enumerate(batch):
        images[i, :, : img.shape[1], : img.shape[2]] = img
    masks = padding_masks([tuple(img.shape[1:]) for img, _ in batch], (H, W))
    return {"images": images, "masks": masks, "targets": [t for _, t in batch]}


def padding_mask_to(masks: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """A batch's padding mask on ``device``, or None when nothing is padded: decided on the host
    (the collated batch is there), so the model never reads a mask back from the device. Copied
    ``non_blocking`` as the images are: on a GPU the loaders pin their batches, and a blocking copy
    from pinned memory would make the host wait for the GPU each step before the forward is queued
    (from unpinned memory, or to the CPU, the flag changes nothing)."""
    return masks.to(device, non_blocking=True) if bool(masks.any()) else None

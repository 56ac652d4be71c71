"""DETR from Python, as mmdet's ``init_detector`` and ``inference_detector``:

    from bertdetr.detr import init_detector, inference_detector, draw

    detector = init_detector("detr-r50/")                  # our checkpoint folder (bertdetr detr convert/train)
    detector = init_detector("detr_r50_8xb2-150e_coco.py", "detr_r50.pth")   # or mmdet's config + checkpoint
    result = inference_detector(detector, "demo.jpg")      # a path, a BGR numpy array or a PIL image
    result.boxes, result.scores, result.labels, result.names   # best first, pixels of the original image
    draw(result, threshold=0.5).save("demo.png")

Each image goes through the checkpoint's recorded test pipeline (``pipeline.json``: mmdet's,
official DETR's or ours) exactly as ``bertdetr detr predict`` runs it, so the detections equal
the command's ``results.json`` for the same files (a test checks it).

And as transformers' object-detection pipeline, its output and post-processing (official DETR's
``PostProcess``: every query over the threshold, in query order, integer boxes not clamped):

    from bertdetr.detr import pipeline

    detect = pipeline("object-detection", model="detr-r50/")   # or an mmdet config, checkpoint=
    detect("demo.jpg")      # [{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}, ...]
    detect(["a.jpg", "b.jpg"], threshold=0.9)                  # a list each
    detect(paths, batch_size=8)                               # those of one size 8 at a time
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from bertdetr.detr.config import DETRConfig
from bertdetr.detr.data.coco import MAX_PIXELS, ImageLoadError
from bertdetr.detr.data.pipelines import PreparedImage, check_pipeline, prepare_array, prepare_image
from bertdetr.detr.model import DETR
from bertdetr.detr.data.pipelines import batches_of_one_size
from bertdetr.detr.predict import check_count, check_scale, detect_prepared, image_loader
from bertdetr.detr.visualize import draw_detections
from bertdetr.devices import parse_device
from bertdetr.errors import BertDetrError
from bertdetr.training.precision import autocast_to, inference_dtype

__all__ = ["Detector", "Detections", "PredInstances", "init_detector", "inference_detector", "draw", "pipeline",
           "ObjectDetectionPipeline"]


@dataclass
class Detector:
    """A model ready for ``inference_detector``: what ``init_detector`` returns."""

    model: DETR
    """The model, in eval mode, on its device."""
    config: DETRConfig
    """Its config."""
    class_names: list[str]
    """Name of each label."""
    category_ids: list[int]
    """Dataset category id of each label (for COCO results)."""
    pipeline: str
    """The test pipeline images go through (``mmdet``, ``official``, ``bertdetr``)."""
    test_size: int = 800
    """Shorter side the images are resized to."""
    max_size: int = 1333
    """Longest side at most."""
    max_pixels: int | None = MAX_PIXELS
    """Larger images are refused (PIL's decompression-bomb limit by default; None: no limit)."""

    def __post_init__(self):
        # a bad scale would otherwise surface only at the first image, as a TypeError inside the
        # resize or as a message blaming the image (``check_resizable``)
        check_scale(self.test_size, self.max_size, self.max_pixels)
        if self.test_size is None or self.max_size is None:
            raise BertDetrError(f"a Detector needs test_size and max_size, got {self.test_size!r}, {self.max_size!r}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


@dataclass
class PredInstances:
    """mmdet's ``InstanceData`` of detections: ``bboxes`` [K,4] xyxy pixels, ``scores`` [K],
    ``labels`` [K]; ``p[index]`` (a bool mask, indices or a slice) the same of those picked."""

    bboxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __getitem__(self, index) -> "PredInstances":
        if isinstance(index, int):
            index = slice(index, index + 1)  # (mmdet's InstanceData keeps an instance a set of one)
        return PredInstances(self.bboxes[index], self.scores[index], self.labels[index])

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Detections:
    """The detections of one image, best first (mmdet's ``DetDataSample.pred_instances``).
    K detections: the model's ``test_cfg.max_per_img``, before any score threshold."""

    boxes: np.ndarray
    """[K,4] float32, pixel (x1, y1, x2, y2) of the original image."""
    scores: np.ndarray
    """[K] float32."""
    labels: np.ndarray
    """[K] int64, indexes into ``Detector.class_names``."""
    names: list[str]
    """[K] class name of each detection."""
    category_ids: list[int]
    """[K] dataset category id of each detection."""
    image: Image.Image = field(repr=False)
    """The image as decoded (RGB), for ``draw``."""

    @property
    def pred_instances(self) -> "PredInstances":
        """mmdet 3's ``DetDataSample.pred_instances``: ``bboxes``, ``scores``, ``labels`` as CPU
        tensors, indexable as its ``InstanceData`` (``p[p.scores > 0.3]``), so that code written
        for mmdet's results reads these."""
        return PredInstances(torch.from_numpy(self.boxes), torch.from_numpy(self.scores), torch.from_numpy(self.labels))

    def above(self, threshold: float) -> "Detections":
        """Only the detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        pick = np.flatnonzero(keep).tolist()
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], [self.names[i] for i in pick],
                          [self.category_ids[i] for i in pick], self.image)


def init_detector(config_or_checkpoint: str | os.PathLike | None, checkpoint: str | os.PathLike | None = None,
                  device: str | int | torch.device | None = None, test_size: int | None = None,
                  max_size: int | None = None, pipeline: str | None = None, max_pixels: int | None = MAX_PIXELS) -> Detector:
    """A detector from our checkpoint folder (``init_detector("detr-r50/")``), or from an mmdet
    config file and its checkpoint, as mmdet's ``init_detector(config, checkpoint)`` (converted in
    memory: mmdet's test pipeline and scale, the class names its meta keeps, else COCO's 80), or
    from an mmdet checkpoint alone (``init_detector(None, checkpoint)``: the config its meta keeps).
    ``device``: default the GPU when there is one; -1 the CPU, k the k-th GPU, as transformers'
    (``bertdetr.devices.parse_device``). ``pipeline``, ``test_size``, ``max_size``: other
    than the checkpoint's (``pipeline.json``, as ``detr train`` and ``detr convert`` record them);
    None keeps the checkpoint's. ``max_pixels``: larger images are refused (None: no limit)."""
    check_scale(test_size, max_size, max_pixels)  # before the checkpoint is read: a bad value fails at once
    device = parse_device(device)  # (BERT's pipelines read it alike: bertdetr.devices)
    if config_or_checkpoint is None and checkpoint is None:
        raise BertDetrError("give a checkpoint folder, an mmdet config and its checkpoint, or a checkpoint whose "
                            "meta keeps its config")
    path = None if config_or_checkpoint is None else os.fspath(config_or_checkpoint)
    if checkpoint is None:
        if not os.path.isdir(path):
            raise BertDetrError(f"{path} is not a checkpoint folder (config.json, model.safetensors); for an mmdet "
                                "config give its checkpoint too: init_detector(config, checkpoint)")
        from bertdetr.detr.weights import load_checkpoint_dir

        ckpt = load_checkpoint_dir(path, device)
        model, config, ids, names, recorded = ckpt.model, ckpt.config, ckpt.category_ids, ckpt.class_names, ckpt.pipeline
        scale = (ckpt.test_size, ckpt.max_size)
    else:
        from bertdetr.detr.convert.load import (EXPORT_RECORD, classes_from_names, coco80_classes, from_mmdet,
                                                mmdet_class_names, read_export_record, with_kept_ids)
        from bertdetr.detr.weights import read_checkpoint

        raw = read_checkpoint(os.fspath(checkpoint))
        if path is None:
            from bertdetr.detr.convert.load import mmdet_config_text
            from bertdetr.detr.convert.mmdet_config import mmdet_config_from_text

            text = mmdet_config_text(raw)
            if text is None:
                raise BertDetrError(f"{os.fspath(checkpoint)} keeps no config in its meta: give its mmdet config too")
            path = mmdet_config_from_text(text, f"the config kept in {os.fspath(checkpoint)}")
        model, config = from_mmdet(path, raw)
        names_kept = mmdet_class_names(raw)
        ids, names = classes_from_names(names_kept) if names_kept else coco80_classes()
        if len(ids) != config.bbox_head.num_classes:
            ids = list(range(1, config.bbox_head.num_classes + 1))
            names = [f"class {i}" for i in ids]
        # an mmdet export of ours keeps its dataset's category ids and test pipeline in its meta
        # (``detr convert`` reads them alike): results as the model exported gives them
        meta = raw.get("meta") if isinstance(raw, dict) and isinstance(raw.get("meta"), dict) else {}
        where = f"{os.fspath(checkpoint)} meta[{EXPORT_RECORD!r}]"
        kept_ids, kept_pipeline = read_export_record(meta.get(EXPORT_RECORD), where)
        (ids, names), _ = with_kept_ids((ids, names), kept_ids, where)  # (as detr convert reads them)
        model.to(device)
        recorded = kept_pipeline or "mmdet"
        from bertdetr.detr.convert.mmdet_config import load_mmdet_config, mmdet_test_scale

        scale = mmdet_test_scale(path if isinstance(path, dict) else load_mmdet_config(path)) or (800, 1333)
    model.eval()
    return Detector(model, config, list(names), list(ids), check_pipeline(pipeline) if pipeline else recorded,
                    scale[0] if test_size is None else test_size, scale[1] if max_size is None else max_size,
                    max_pixels)


FOLDER_HINT = "give its image files as a list of paths (DetInferencer(...)(folder) reads a folder's images)"
"""What ``inference_detector`` and the pipeline, which take image files, say of a folder."""


def check_not_folder(image, hint: str = FOLDER_HINT) -> None:
    """``ImageLoadError`` for a path that is a folder: the image checks would call it "image file
    not found", which sends the user looking for a missing file. ``hint``: how to pass a folder."""
    if isinstance(image, (str, os.PathLike)) and os.path.isdir(image):
        raise ImageLoadError(f"{os.fspath(image)} is a folder, not an image file: {hint}")


def prepare_input(detector: Detector, image, index: int, folder_hint: str = FOLDER_HINT) -> PreparedImage:
    """One input of ``inference_detector`` (a path, a BGR array or a PIL image; ``index`` names
    it in messages) through the detector's test pipeline. ``folder_hint``: what a folder given
    here is told (``check_not_folder``)."""
    if isinstance(image, (str, os.PathLike)):
        check_not_folder(image, folder_hint)
        return prepare_image(image, detector.pipeline, detector.test_size, detector.max_size, detector.max_pixels)
    return prepare_array(image, detector.pipeline, detector.test_size, detector.max_size, detector.max_pixels,
                         name=f"image {index}")


def inference_detector(detector: Detector, imgs) -> Detections | list[Detections]:
    """The detections of one image or of a list of them (then a list, in order), as mmdet's
    ``inference_detector``: each a path, a numpy array uint8 [H,W,3] in BGR order (as ``cv2.imread``
    gives it) or a PIL image. An image that cannot be used raises ``ImageLoadError`` naming it."""
    single = not isinstance(imgs, (list, tuple))
    images: Sequence = [imgs] if single else imgs
    out = []
    for k, image in enumerate(images):
        prepared = prepare_input(detector, image, k)
        det = detect_prepared(detector.model, prepared.tensor, prepared.scale_factor,
                              detector.config.test_cfg.max_per_img)
        out.append(to_detections(detector, det, prepared.image))
    return out[0] if single else out


def to_detections(detector: Detector, det: dict, image: Image.Image) -> Detections:
    """``Detections`` of ``detect_prepared``'s dict (tensors ``boxes``, ``scores``, ``labels``) of ``image``."""
    labels = det["labels"].numpy().astype(np.int64)
    return Detections(det["boxes"].numpy().astype(np.float32), det["scores"].numpy().astype(np.float32), labels,
                      [detector.class_names[i] for i in labels.tolist()],
                      [detector.category_ids[i] for i in labels.tolist()], image)


def draw(detections: Detections, threshold: float = 0.5, class_names: Sequence[str] | None = None,
         font: str | os.PathLike | None = None, min_side: int = 400) -> Image.Image:
    """The image with each detection scoring at least ``threshold`` drawn (box in its class colour,
    ``name score`` tag), as ``bertdetr detr predict`` draws them. ``class_names``: the detector's,
    for the colours (default: the names of these detections, coloured by label). ``font``: the
    tags' font file (default: PIL's, or a CJK font of this machine for Chinese class names).
    ``min_side``: a smaller image is drawn enlarged (``draw_detections``); 0: at its own size."""
    if class_names is None:
        table: dict[int, str] = {}
        for label, name in zip(detections.labels.tolist(), detections.names):
            table[label] = name
        class_names = [table.get(i, f"class {i}") for i in range(int(detections.labels.max(initial=-1)) + 1)]
    return draw_detections(detections.image, detections.boxes, detections.scores, detections.labels,
                           class_names, threshold, min_side=min_side, font=font)


class ObjectDetectionPipeline:
    """transformers' ``ObjectDetectionPipeline`` on a ``Detector``: for an image (a path, a PIL
    image, or a BGR array as ``inference_detector`` takes them) ``[{"score", "label", "box":
    {"xmin", "ymin", "xmax", "ymax"}}]``, every query whose score is over ``threshold`` (default
    0.5, as there), in query order, boxes in pixels of the original image truncated to ints and not
    clamped (official DETR's ``PostProcess``); for a list of images a list of those. A file or PIL
    image is turned by its EXIF orientation first, as transformers' ``load_image`` does (boxes
    are in the picture as shown; ``inference_detector`` takes pixels as its pipeline decodes
    them); then the detector's recorded pipeline: official DETR's (PIL) is what transformers'
    ``DetrImageProcessor`` does, so on such a folder (``detr convert --from official``, or
    ``init_detector(..., pipeline="official")``) the two agree."""

    def __init__(self, detector: Detector, threshold: float = 0.5, batch_size: int = 1,
                 dtype: torch.dtype | None = None, num_workers: int = 0):
        self.detector, self.threshold = detector, _check_threshold(threshold)
        self.batch_size = check_count("batch_size", batch_size, 1)
        self.num_workers = check_count("num_workers", num_workers, 0)
        self.dtype = inference_dtype(dtype)

    @torch.no_grad()
    def __call__(self, images, threshold: float | None = None, batch_size: int | None = None,
                 num_workers: int | None = None, **options):
        """A list of images with ``batch_size`` N (here or to ``pipeline``): those of one size
        after resizing run N at a time (``pipelines.batches_of_one_size``; nothing padded, so the
        same detections as one at a time). transformers' pipeline stacks a batch's images as they
        are, so there only images of one size can share a batch. ``num_workers``: processes
        decoding and resizing ahead of the model (a ``DataLoader``, as transformers' pipeline)."""
        from bertdetr.detr.postprocess import PostProcess

        if options:
            raise BertDetrError(f"object-detection takes threshold, batch_size and num_workers, not "
                                f"{', '.join(sorted(options))}")
        threshold = self.threshold if threshold is None else _check_threshold(threshold)
        batch_size = check_count("batch_size", batch_size, 1) or self.batch_size
        num_workers = self.num_workers if num_workers is None else check_count("num_workers", num_workers, 0)
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        prepared = image_loader(ShownInputs(images, self.detector), num_workers)
        results: list = [None] * len(images)
        model = self.detector.model
        for group in batches_of_one_size(prepared, batch_size):
            if isinstance(group[0][1], ImageLoadError):
                raise group[0][1]
            batch = torch.stack([p.tensor for _, p in group])
            device = next(model.parameters()).device
            with autocast_to(device, self.dtype):
                outputs = model(batch.to(device), None)
            sizes = torch.tensor([[p.image.height, p.image.width] for _, p in group])
            for (k, _), det in zip(group, PostProcess()(outputs, sizes)):
                keep = det["scores"] > threshold
                results[k] = [{"score": score, "label": self.detector.class_names[label],
                               "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), box))}
                              for score, label, box in zip(det["scores"][keep].tolist(), det["labels"][keep].tolist(),
                                                           det["boxes"][keep].int().tolist())]
        return results[0] if single else results


class ShownInputs(torch.utils.data.Dataset):
    """The pipeline's inputs, each as transformers' ``load_image`` shows it (``_shown``) and through
    the detector's test pipeline, for a ``DataLoader``'s workers: item k is ``(k, PreparedImage)``,
    or ``(k, ImageLoadError)`` for the caller to raise. Holds the detector's settings, not its model."""

    def __init__(self, images: Sequence, detector: Detector):
        self.images, self.settings = images, dataclasses.replace(detector, model=None)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, k: int):
        try:
            check_not_folder(self.images[k])  # before _shown, whose loader calls a folder a missing file
            return k, prepare_input(self.settings, _shown(self.images[k], self.settings.max_pixels), k)
        except ImageLoadError as e:
            return k, e


def _shown(image, max_pixels: int | None):
    """A path or PIL image as transformers' ``load_image`` gives it: EXIF orientation applied, RGB
    (a path checked and opened as ``coco.load_image`` does); an array as it is."""
    from PIL import ImageOps

    from bertdetr.detr.data.coco import load_image

    if isinstance(image, (str, os.PathLike)):
        return load_image(os.fspath(image), max_pixels=max_pixels)
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image)
    return image


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise BertDetrError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def pipeline(task: str, model: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
             device: str | int | torch.device | None = None, threshold: float = 0.5, batch_size: int = 1,
             dtype: torch.dtype | str | None = None, torch_dtype: torch.dtype | str | None = None,
             num_workers: int = 0, **init_options) -> ObjectDetectionPipeline:
    """transformers' ``pipeline("object-detection", model=...)`` on our checkpoint folder or an
    mmdet config with its ``checkpoint`` (``init_detector``'s options in ``init_options``:
    ``pipeline``, ``test_size``, ``max_size``, ``max_pixels``); ``batch_size``, ``num_workers`` as the call's;
    ``dtype`` (or transformers' older ``torch_dtype``) ``torch.bfloat16``/``float16``: the model
    under autocast to it (transformers casts the weights; autocast keeps the LayerNorms and the
    post-processing in float32), detections close to float32's."""
    if task != "object-detection":
        raise BertDetrError(f"unknown task {task!r}: DETR's pipeline is object-detection (BERT's tasks: "
                            "bertdetr.bert.pipeline)")
    unknown = sorted(set(init_options) - {"pipeline", "test_size", "max_size", "max_pixels"})
    if unknown:
        raise BertDetrError(f"object-detection takes checkpoint, device, threshold, batch_size, num_workers, dtype, "
                            f"pipeline, test_size, max_size, max_pixels, not {', '.join(unknown)}")
    batch_size = check_count("batch_size", batch_size, 1)
    dtype = inference_dtype(dtype if dtype is not None else torch_dtype)
    num_workers = check_count("num_workers", num_workers, 0)
    return ObjectDetectionPipeline(init_detector(model, checkpoint, device=device, **init_options), threshold,
                                   batch_size, dtype, num_workers)

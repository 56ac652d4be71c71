"""COCO evaluation of detections: results json in COCO's format and mAP through pycocotools, or
through faster-coco-eval (a C++ reimplementation with the same numbers, several times faster on
large sets; ``pip install bertdetr[fast-eval]``).

Detections are per image: ``boxes`` [K,4] pixel (x1, y1, x2, y2) in the original image, ``scores``
[K], ``labels`` [K] contiguous labels; the label -> category id mapping of the dataset turns them
back into COCO category ids. ``predict_dataset`` runs a model over a dataset, ``evaluate_detr``
scores it (under torchrun each process predicts its share, the results are gathered).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import torch

from bertdetr.detr.data.coco import CocoDetection, CocoIndex
from bertdetr.detr.model import DETR
from bertdetr.detr.data.pipelines import TRANSPOSING_ORIENTATIONS, PipelineDataset, batches_of_one_size
from bertdetr.detr.postprocess import DetrPostProcess
from bertdetr.detr.data.transforms import eval_transforms
from bertdetr.training.distributed import Distributed
from bertdetr.training.precision import autocast_to
from bertdetr.errors import BertDetrError
from bertdetr.fileio import write_json

#: Names of pycocotools' 12 summary numbers, in its order.
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def to_coco_results(image_id, boxes, scores, labels, category_ids: Sequence[int]) -> list[dict]:
    """One image's detections as COCO result entries (``bbox`` is [x, y, width, height])."""
    out = []
    for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        out.append({
            "image_id": image_id,
            "category_id": int(category_ids[int(label)]),
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(score), 5),
        })
    return out


def write_results(results: list[dict], path: str | os.PathLike) -> None:
    """COCO's results file (JSON: a non-finite score is an error, never ``NaN`` in the file)."""
    write_json(path, results)


#: Evaluation back-ends: ``coco_evaluation(..., backend=...)`` and ``bertdetr detr eval --coco-backend``.
COCO_BACKENDS = ("pycocotools", "faster-coco-eval")


def coco_api(backend: str):
    """(COCO, COCOeval) classes of ``backend``; a clear error when it is not installed."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster-coco-eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise BertDetrError("the faster-coco-eval back-end is not installed: "
                                "pip install 'bertdetr[fast-eval]' (or faster-coco-eval)") from None
        return COCO, COCOeval_faster
    raise BertDetrError(f"unknown COCO evaluation back-end {backend!r}; choose one of {', '.join(COCO_BACKENDS)}")


@dataclass
class CocoEvaluation:
    """What COCOeval says of a set of detections."""

    metrics: dict[str, float]
    """``COCO_METRICS`` -> value (pycocotools' 12 summary numbers)."""
    per_class_ap: dict[int, float]
    """Category id -> AP@[.50:.95] (all areas, 100 detections) from COCOeval's precision array, as
    mmdet's ``classwise=True``: NaN for a category without ground truth in the evaluated images."""
    table: list[str]
    """The 12-line summary table as COCOeval prints it."""


def with_coco_defaults(coco: dict) -> dict:
    """``coco`` (an annotation file's JSON object) with what the COCO API reads of each annotation
    and a file may leave out filled in, as the API's ``loadRes`` fills it for results: ``iscrowd``
    0, ``area`` the bbox's width x height, and ids 1..N in file order where one is missing (or
    repeated, or not a positive integer: COCOeval marks a matched detection by its object's id, so
    an object of id 0 would count as missed). Our own loader reads such files (``iscrowd`` 0
    unless given); unfilled, pycocotools and faster-coco-eval fail on them with a ``KeyError``
    ('iscrowd' in COCOeval, 'id' in ``createIndex``), in ``detr train`` only at the first
    validation, an epoch in. Changes ``coco`` in place and returns it."""
    annotations = coco.get("annotations")
    if not isinstance(annotations, list):
        return coco
    annotations = [a for a in annotations if isinstance(a, dict)]
    for a in annotations:
        a.setdefault("iscrowd", 0)
        bbox = a.get("bbox")
        if "area" not in a and isinstance(bbox, (list, tuple)) and len(bbox) == 4:
            try:
                a["area"] = float(bbox[2]) * float(bbox[3])
            except (TypeError, ValueError):
                pass  # (load_coco names a bbox that is not four numbers)
    ids = [a.get("id") for a in annotations]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids) or len(set(ids)) != len(ids):
        for k, a in enumerate(annotations, 1):
            a["id"] = k  # (the ground truth's ids are the API's own business: no result refers to them)
    return coco


def coco_evaluation(ann_file: str | os.PathLike, results: list[dict], image_ids: Iterable | None = None,
                    backend: str = "pycocotools") -> CocoEvaluation:
    """COCOeval of ``results`` against ``ann_file``: the 12 numbers, per-class AP and the table.
    The file's annotations may lack ``iscrowd``, ``area`` and ``id`` (``with_coco_defaults``)."""
    from bertdetr.detr.data.coco import read_coco_json

    COCO, COCOeval = coco_api(backend)
    coco = with_coco_defaults(read_coco_json(ann_file))
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        gt = COCO()  # (both back-ends: an empty one, then the file's object, defaults filled in, indexed)
        gt.dataset = coco
        gt.createIndex()
        if not results:
            # pycocotools cannot load an empty result list; no detection scores 0 everywhere
            # (and -1 where the ground truth has no boxes of that size, as pycocotools reports).
            return CocoEvaluation({k: 0.0 for k in COCO_METRICS}, {c: 0.0 for c in sorted(gt.getCatIds())},
                                  ["(no detections: every metric 0)"])
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        if backend == "faster-coco-eval":
            ev.print_function = print  # its summary table goes to the logger by default
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision [IoU thresholds, recall points, categories, areas, max detections]: area 'all'
    # (index 0), 100 detections (last); -1 marks no ground truth (mmdet's classwise AP)
    precision = ev.eval["precision"]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[int(cat_id)] = float(p.mean()) if p.size else float("nan")
    # faster-coco-eval appends AR@0.5 and AR@0.75 lines: the familiar table is the first 12
    table = [line for line in sink.getvalue().splitlines() if line.lstrip().startswith("Average")][:12]
    return CocoEvaluation({k: float(v) for k, v in zip(COCO_METRICS, ev.stats)}, per_class, table)


@dataclass
class PrecisionRecall:
    """What a person sees in the drawn pictures: the detections scoring >= ``threshold``, each
    matched to at most one ground-truth object of its class (and each object to at most one
    detection) at IoU >= ``iou``, best score first, as COCO matches; a second box on an object
    counts as wrong."""

    precision: float
    """Matched detections / detections kept (1.0 when none is kept)."""
    recall: float
    """Matched objects / objects."""
    detections: int
    """Detections kept (score >= threshold)."""
    objects: int
    """Ground-truth objects (crowd boxes not counted)."""
    matched: int
    """Detections matched to an object."""
    threshold: float
    """Score from which a detection is kept."""
    iou: float
    """IoU from which a kept detection is on an object."""

    def describe(self) -> str:
        """One line (``detr predict --ann`` and the demo print it)."""
        return (f"at score >= {self.threshold:g}: precision {self.precision:.3f} ({self.matched} of {self.detections} "
                f"boxes on an object), recall {self.recall:.3f} ({self.matched} of {self.objects} objects found; "
                f"IoU >= {self.iou:g}, each object matched once)")


def precision_recall(ann_file: str | os.PathLike, results: list[dict], threshold: float = 0.5,
                     iou: float = 0.5, images: Sequence[str | int] | None = None,
                     decoded: Mapping[str | int, tuple[int, int, int]] | None = None) -> PrecisionRecall:
    """``PrecisionRecall`` of COCO ``results`` against ``ann_file``. A result's ``image_id`` is the
    image's id or its ``file_name`` (``detr predict`` names images by file); images with no result
    count their objects as missed. ``images``: the images that were predicted (ids or file names;
    default: every image of ``ann_file``), whose objects alone are counted. No NMS: duplicates are
    the detector's own. ``decoded``: image (id or file name) -> (width, height, EXIF orientation
    left unapplied) of the image its detections were made on (``predict.decoded_frames``; default:
    the json's width and height): where a file is another size than its json entry, its boxes are
    scaled to the json's pixels before they are compared, as ``detr eval`` scales them
    (``FrameCheck``, with its warnings)."""
    from bertdetr.detr.boxes import box_iou
    from bertdetr.detr.data.coco import field_of, read_coco_json

    coco = read_coco_json(ann_file)
    if "annotations" not in coco:
        raise BertDetrError(f"{ann_file} has no annotations: precision and recall need the images' objects")
    coco_images, annotations = field_of(coco, "images", ann_file), coco["annotations"]
    if not isinstance(coco_images, list) or not isinstance(annotations, list):
        raise BertDetrError(f"{ann_file}: its images and annotations must be lists")
    by_name = {}
    for im in coco_images:
        image_id, name = field_of(im, "id", "an image entry"), field_of(im, "file_name", "an image entry")
        by_name[name] = by_name[os.path.basename(name)] = image_id
    as_id = lambda i: by_name.get(i, i) if isinstance(i, str) else i  # noqa: E731
    counted = None if images is None else {as_id(i) for i in images}
    truth: dict = {}
    for a in annotations:
        image = field_of(a, "image_id", f"annotation {a.get('id', '?')}")
        for key in ("bbox", "category_id"):
            field_of(a, key, f"annotation {a.get('id', '?')}")
        if not a.get("iscrowd", 0) and (counted is None or image in counted):
            truth.setdefault(image, []).append(a)
    factors: dict = {}
    if decoded:
        check = FrameCheck()
        annotated = {im["id"]: (im.get("width"), im.get("height")) for im in coco_images}
        for name, (w, h, turn) in decoded.items():
            size = annotated.get(as_id(name))
            if size is not None and None not in size:
                factors[as_id(name)] = check.factor(str(name), (w, h), size, turn)
        check.warn(len(decoded), "their detections are scaled to the json's pixels to be compared with its boxes "
                   "(results.json keeps the files' pixels)")
    kept: dict = {}
    for r in results:
        if r["score"] >= threshold:
            image = as_id(r["image_id"])
            fx, fy = factors.get(image, (1.0, 1.0))
            if (fx, fy) != (1.0, 1.0):
                x, y, w, h = r["bbox"]
                r = {**r, "bbox": [x * fx, y * fy, w * fx, h * fy]}
            kept.setdefault(image, []).append(r)
    xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731  COCO's [x, y, w, h]
    matched = 0
    for image, dets in kept.items():
        gts = truth.get(image, [])
        if not gts:
            continue
        ious = box_iou(torch.tensor([xyxy(d["bbox"]) for d in dets], dtype=torch.float64),
                       torch.tensor([xyxy(g["bbox"]) for g in gts], dtype=torch.float64))
        taken = [False] * len(gts)
        for i in sorted(range(len(dets)), key=lambda k: -dets[k]["score"]):
            best, best_iou = -1, iou
            for j, g in enumerate(gts):
                if not taken[j] and g["category_id"] == dets[i]["category_id"] and ious[i, j] >= best_iou:
                    best, best_iou = j, float(ious[i, j])
            if best >= 0:
                taken[best] = True
                matched += 1
    n_det = sum(len(d) for d in kept.values())
    n_obj = sum(len(g) for g in truth.values())
    return PrecisionRecall(matched / n_det if n_det else 1.0, matched / n_obj if n_obj else 1.0, n_det, n_obj,
                           matched, threshold, iou)


@dataclass
class FrameCheck:
    """Where an image's decoded pixels, the frame its detections come out in, are not the frame of
    its annotation entry's ``width`` and ``height``, which COCO's ground truth (and a COCO results
    file) is in; ``factor`` says how to take its boxes there and keeps the image for ``warn``'s lines.

    - resized: the file is another size than the json says (the photos resized after annotation,
      or a json written for thumbnails): boxes are scaled by (json w / decoded w, json h / decoded
      h), as training's dataset scales the ground truth the other way;
    - turned: the pipeline left an EXIF orientation that transposes (5..8) unapplied (``official``,
      as official DETR; the quirk is kept) and the decoded size is not the json's: the photo was
      annotated as shown, turned, and is evaluated as stored. No scale takes boxes across a turn,
      so they are left as they are (in the wrong frame: AP near 0), and the warning says which
      pipelines apply the orientation;
    - swapped: width and height swapped otherwise (the json's own mistake, or mmdet's pipeline
      turning a photo the json describes unturned): left as they are too, for the same reason.

    Plain lists (``all_gather_object`` under DDP, then ``merge``)."""

    resized: list = field(default_factory=list)
    """(file, decoded (w, h), json (w, h)) of each resized image."""
    turned: list = field(default_factory=list)
    """(file, decoded (w, h), json (w, h), EXIF orientation) of each image turned and not applied."""
    swapped: list = field(default_factory=list)
    """(file, decoded (w, h), json (w, h)) of each image with its sides swapped otherwise."""

    def factor(self, file: str, decoded: tuple[int, int], annotated: tuple[int, int],
               exif_unapplied: int = 1) -> tuple[float, float]:
        """(x, y) factor from the decoded image's pixels to the json's (1, 1 where they are one
        frame, or no scale can take boxes across), noting the image where they differ."""
        decoded, annotated = tuple(int(v) for v in decoded), tuple(int(v) for v in annotated)
        if decoded == annotated:
            return 1.0, 1.0
        if exif_unapplied in TRANSPOSING_ORIENTATIONS:
            self.turned.append((file, decoded, annotated, int(exif_unapplied)))
        elif decoded == annotated[::-1]:
            self.swapped.append((file, decoded, annotated))
        else:
            self.resized.append((file, decoded, annotated))
            return annotated[0] / decoded[0], annotated[1] / decoded[1]
        return 1.0, 1.0

    def merge(self, others: Iterable["FrameCheck"]) -> "FrameCheck":
        """One check of several (each rank's)."""
        merged = FrameCheck()
        for other in others:
            merged.resized += other.resized
            merged.turned += other.turned
            merged.swapped += other.swapped
        return merged

    def warn(self, total: int, scaled: str = "their detections are scaled to the json's pixels, the frame of "
             "its boxes (as results.json for COCO must be)") -> None:
        """A warning line for each kind found (nothing where every image fits); ``total``: the images
        checked; ``scaled``: what was done with the resized ones' detections."""
        def wh(size):
            return f"{size[0]}x{size[1]}"

        def e_g(found):
            return "" if len(found) == 1 else "e.g. "

        if self.resized:
            f, d, a = self.resized[0]
            warnings.warn(f"{len(self.resized)} of {total} images' files differ in size from the annotation json's "
                          f"width and height ({e_g(self.resized)}{f}: {wh(d)} on disk, {wh(a)} in the json): "
                          f"{scaled}", stacklevel=2)
        if self.turned:
            f, d, a, turn = self.turned[0]
            warnings.warn(f"{len(self.turned)} of {total} images are stored turned, with an EXIF orientation that the "
                          f"official pipeline does not apply, as official DETR does not ({e_g(self.turned)}{f}: "
                          f"orientation {turn}, {wh(d)} as stored, {wh(a)} in the json): their detections are in the "
                          "stored pixels' frame, not the json's, and miss its boxes; --pipeline mmdet or bertdetr "
                          "applies the orientation", stacklevel=2)
        if self.swapped:
            f, d, a = self.swapped[0]
            warnings.warn(f"{len(self.swapped)} of {total} images are decoded with the annotation json's width and "
                          f"height swapped ({e_g(self.swapped)}{f}: {wh(d)} decoded, {wh(a)} in the json): their "
                          "detections are left unscaled (a turn is not a resize), likely in another frame than "
                          "the json's boxes", stacklevel=2)


@torch.no_grad()
def predict_dataset(model: DETR, index: CocoIndex, test_size: int, max_size: int, max_per_img: int,
                    device: torch.device, batch_size: int = 2, env: Distributed | None = None,
                    category_ids: Sequence[int] | None = None, pipeline: str = "bertdetr",
                    num_workers: int = 0, dtype: torch.dtype | None = None) -> list[dict]:
    """COCO result entries of every image of ``index`` (this rank's share under DDP), in index
    order, boxes in the pixels of the images' annotation entries (``width``, ``height``: COCO's
    ground truth is there; a file of another size has its boxes scaled, with a warning, see
    ``FrameCheck``); label l is category ``category_ids[l]`` (default: the dataset's labels).
    ``pipeline``: the test-time pipeline (``pipelines.PIPELINES``); "bertdetr", the training
    data's, also reconciles EXIF orientation with the annotation's size. ``batch_size``: images
    run together where they have one size after resizing (``pipelines.batches_of_one_size``, as
    ``detr predict``): nothing is padded, so the results are those of one image at a time
    whatever ``batch_size`` (padding changes DETR's detections: official DETR's and mmdet's
    numbers move with the batch). ``num_workers`` processes decode and resize ahead of the model
    (mmdet's and official DETR's validation loaders have 2; images pinned on a GPU): the same
    results, in the same order. ``dtype``: the model under autocast to bf16 or fp16
    (post-processing in float32)."""
    results, check = _predict_dataset(model, index, test_size, max_size, max_per_img, device, batch_size, env,
                                      category_ids, pipeline, num_workers, dtype)
    check.warn(len(index.images))
    return results


@dataclass
class _Decoded:
    """A dataset item as ``pipelines.batches_of_one_size`` groups it (by ``tensor``'s shape)."""

    tensor: torch.Tensor
    target: dict


def _as_is(item):
    return item


@torch.no_grad()
def _predict_dataset(model: DETR, index: CocoIndex, test_size: int, max_size: int, max_per_img: int,
                     device: torch.device, batch_size: int = 2, env: Distributed | None = None,
                     category_ids: Sequence[int] | None = None, pipeline: str = "bertdetr",
                     num_workers: int = 0, dtype: torch.dtype | None = None) -> tuple[list[dict], FrameCheck]:
    """``predict_dataset``'s results and its ``FrameCheck``, not yet warned of (``evaluate_detr``
    gathers the ranks' first)."""

    env = env or Distributed()
    if pipeline == "bertdetr":
        dataset = CocoDetection(index, eval_transforms(test_size, max_size), skip_bad_images=True)
    else:
        dataset = PipelineDataset(index, pipeline, test_size, max_size)
    indices = list(range(env.rank, len(dataset), env.world_size))
    # items one by one, grouped by size here; its own generator: a loader draws a base seed as it
    # starts, which from torch's global one would shift a training run's dropout stream by each
    # validation (and a resume past one)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=None,
                                         collate_fn=_as_is, num_workers=num_workers,
                                         prefetch_factor=2 * batch_size if num_workers else None,
                                         pin_memory=device.type == "cuda", generator=torch.Generator())
    infos = {info["id"]: info for info in index.images}
    ids = index.category_ids if category_ids is None else category_ids
    post = DetrPostProcess(max_per_img)
    check = FrameCheck()
    was_training = model.training
    model.eval()
    found: dict[int, list[dict]] = {}
    items = ((k, _Decoded(*item)) for k, item in enumerate(loader) if item is not None)  # None: unreadable, warned
    for group in batches_of_one_size(items, batch_size):
        images = torch.stack([d.tensor.to(device, non_blocking=True) for _, d in group])
        with autocast_to(device, dtype):
            outputs = model(images, None)  # one size: nothing padded, no mask
        h, w = images.shape[2:]
        scales = []
        for _, d in group:
            t = d.target
            info = infos[t["image_id"]]
            decoded = (int(t["orig_size"][1]), int(t["orig_size"][0]))
            fx, fy = check.factor(info["file_name"], decoded, (info["width"], info["height"]),
                                  t.get("exif_unapplied", 1))
            # the pipeline's scale (resized / decoded) and on to the json's pixels
            scales.append((w / (decoded[0] * fx), h / (decoded[1] * fy)))
        for (k, d), det in zip(group, post(outputs, [(h, w)] * len(group), scales)):
            found[k] = to_coco_results(d.target["image_id"], det["boxes"].cpu(), det["scores"].cpu(),
                                       det["labels"].cpu(), ids)
    model.train(was_training)
    return [r for k in sorted(found) for r in found[k]], check


def evaluate_detr(model: DETR, index: CocoIndex, ann_file: str, test_size: int, max_size: int, max_per_img: int,
                  device: torch.device, batch_size: int = 2, env: Distributed | None = None,
                  results_path: str | None = None, coco_backend: str = "pycocotools",
                  category_ids: Sequence[int] | None = None, pipeline: str = "bertdetr",
                  num_workers: int = 0, dtype: torch.dtype | None = None) -> CocoEvaluation:
    """COCO mAP (``.metrics``), per-class AP and the summary table of ``model`` on ``index``
    (gathered over ranks, through ``coco_backend``); writes the results json if asked.
    ``batch_size``, ``category_ids``, ``pipeline``, ``num_workers``, ``dtype``: as
    ``predict_dataset`` (whose warnings the main rank gives, once for all ranks)."""
    env = env or Distributed()
    results, check = _predict_dataset(model, index, test_size, max_size, max_per_img, device, batch_size, env,
                                      category_ids, pipeline, num_workers, dtype)
    if env.world_size > 1:
        import torch.distributed as dist

        gathered: list = [None] * env.world_size
        dist.all_gather_object(gathered, (results, check))
        results = [r for part, _ in gathered for r in part]
        check = FrameCheck().merge(c for _, c in gathered)
    if env.main:
        check.warn(len(index.images))
    if results_path:
        write_results(results, results_path)
    return coco_evaluation(ann_file, results, image_ids=[im["id"] for im in index.images], backend=coco_backend)


def label_category_ids(category_ids: Sequence[int], class_names: Sequence[str], index: CocoIndex,
                       names_known: bool = True) -> tuple[list[int], str]:
    """The dataset category id of each of a model's labels, to evaluate it on ``index`` -> (ids, how).

    By id when the model's ids cover the dataset's and the names agree (a converted COCO model on
    ``instances_val2017.json``: ids 1..90 with gaps); else by name when the dataset's names are all
    among the model's (mmdet's way: its CocoDataset looks category ids up by class name). Labels of
    classes the dataset lacks get ids it does not have, so COCOeval passes over them. Anything else
    is an error that says which categories do not fit.
    """
    ids, names = [int(i) for i in category_ids], [str(n) for n in class_names]
    data_names = dict(zip(index.category_ids, index.class_names))
    if set(index.category_ids) <= set(ids):
        clash = [(i, n, data_names[i]) for i, n in zip(ids, names) if i in data_names and n != data_names[i]]
        if not names_known or not clash:
            return ids, "by category id"
    else:
        clash = []
    by_name = {n: i for i, n in data_names.items()}
    twice = sorted({n for n in index.class_names if index.class_names.count(n) > 1})
    if names_known and set(by_name) <= set(names) and len(set(names)) == len(names) and not twice:
        spare = iter(range(max(index.category_ids + ids) + 1, 1 << 31))
        return [by_name[n] if n in by_name else next(spare) for n in names], "by class name"
    missing = [f"{i} {data_names[i]!r}" for i in index.category_ids if i not in ids]
    problems = [f"category {i} is {n!r} for the checkpoint but {d!r} in the dataset" for i, n, d in clash[:3]]
    if twice:  # (by name, one of them could never be matched)
        problems.append("the dataset names more than one category " + ", ".join(map(repr, twice[:3])))
    if missing:
        problems.append(f"{len(missing)} of the dataset's categories are not among the checkpoint's: "
                        + ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""))
    shown = ", ".join(f"{i} {n!r}" for i, n in list(zip(ids, names))[:5]) + (", ..." if len(ids) > 5 else "")
    raise BertDetrError(f"the checkpoint's {len(ids)} classes ({shown}) do not fit the dataset's "
                        f"{index.num_classes}: " + "; ".join(problems)
                        + ("" if names_known else " (the checkpoint has no classes.json to match names)"))

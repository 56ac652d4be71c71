"""COCO evaluation of detections: results json in COCO's format and mAP through pycocotools.

Detections are per image: ``boxes`` [K,4] pixel (x1, y1, x2, y2) in the original image, ``scores``
[K], ``labels`` [K] contiguous labels; the label -> category id mapping of the dataset turns them
back into COCO category ids.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Iterable, Sequence

from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output

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
    with atomic_output(path, "w") as f:
        json.dump(results, f)


def coco_evaluate(ann_file: str | os.PathLike, results: list[dict], image_ids: Iterable | None = None,
                  verbose: bool = False) -> dict[str, float]:
    """COCO bbox mAP of ``results`` against ``ann_file``; returns ``COCO_METRICS`` -> value.

    ``image_ids`` restricts evaluation to those images (e.g. the ones that could be read).
    pycocotools prints its table; it is shown only when ``verbose``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not os.path.isfile(ann_file):
        raise BertDetrError(f"annotation file not found: {ann_file}")
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        gt = COCO(os.fspath(ann_file))
        if not results:
            # pycocotools cannot load an empty result list; no detection scores 0 everywhere
            # (and -1 where the ground truth has no boxes of that size, as pycocotools reports).
            return {k: 0.0 for k in COCO_METRICS}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(sink.getvalue(), end="")
    return {k: float(v) for k, v in zip(COCO_METRICS, ev.stats)}

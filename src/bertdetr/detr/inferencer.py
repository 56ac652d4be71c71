"""mmdet 3.x's ``DetInferencer`` (``mmdet/apis/det_inferencer.py``), the API its README starts with:

    from bertdetr.detr import DetInferencer

    inferencer = DetInferencer("detr-r50/")        # our folder; or mmdet's config and weights=checkpoint
    result = inferencer("photo.jpg", out_dir="outputs/")      # a path, a folder, a BGR array or a list
    result["predictions"][0]    # {"labels": [...], "scores": [...], "bboxes": [[x1, y1, x2, y2], ...]}

As mmdet's: the predictions are every detection the model makes (``test_cfg.max_per_img``), best
first, in pixels of the original image, equal to ``inference_detector``'s (and so to mmdet's on
its own weights); ``pred_score_thr`` (0.3) chooses what is drawn, not what is returned; with
``out_dir`` a picture per image goes to ``out_dir/vis/<file name>`` (arrays: ``00000000.jpg``
on; not with ``no_save_vis``) and, with ``no_save_pred=False``, its predictions to
``out_dir/preds/<stem>.json``; the pictures drawn come back under ``visualization`` (RGB arrays).
Where two inputs of one call would share those names (``a.jpg`` beside ``a.png``, or ``a.jpg``
in two folders), mmdet writes the later over the earlier; here the later get ``<stem>_1`` (and
on), with a warning naming them (``output_names``).

Where it departs from mmdet's: the pictures are ours (``draw``: box, class name and score, at
the image's size), not mmengine's visualizer; ``batch_size`` runs together the images of one size after resizing
(``pipelines.batches_of_one_size``): mmdet pads a batch's images to one size, which changes a
DETR's detections, so ours equal one at a time; ``show`` (a window) is not offered; a folder's
files are read in name order (mmengine's listing is the file system's order).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import numpy as np
from PIL import Image

from bertdetr.detr.api import Detections, draw, init_detector, prepare_input, to_detections
from bertdetr.detr.data.pipelines import batches_of_one_size
from bertdetr.detr.predict import check_count, detect_batch, folder_images
from bertdetr.errors import BertDetrError, warn_at_caller
from bertdetr.fileio import atomic_output

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""mmdet's ``det_inferencer.IMG_EXTENSIONS``: the files of a folder that are read (any case here)."""

FOLDER_HINT = "DetInferencer reads a folder given alone, DetInferencer(...)(folder), not one inside a list"
"""What a folder inside a list of inputs is told (``api.check_not_folder``)."""

CALL_OPTIONS = ("batch_size", "return_vis", "show", "wait_time", "no_save_vis", "draw_pred", "pred_score_thr",
                "return_datasamples", "print_result", "no_save_pred", "out_dir")


class DetInferencer:
    """mmdet's ``DetInferencer(model, weights, device)``: ``model`` our checkpoint folder or an mmdet
    config file (then ``weights`` its checkpoint), or None with ``weights`` a checkpoint whose meta
    keeps its config; ``device`` default the GPU if any; ``show_progress`` a bar over the images
    (on a terminal); ``font`` the pictures' (``draw``'s); ``init_options`` as ``init_detector``'s (``pipeline``, ``test_size``,
    ``max_size``, ``max_pixels``)."""

    def __init__(self, model: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
                 device: str | int | None = None, show_progress: bool = True, font: str | os.PathLike | None = None,
                 **init_options):
        unknown = sorted(set(init_options) - {"pipeline", "test_size", "max_size", "max_pixels"})
        if unknown:
            raise BertDetrError(f"DetInferencer takes model, weights, device, show_progress, font, pipeline, "
                                f"test_size, max_size, max_pixels, not {', '.join(unknown)}")
        self.detector = init_detector(model, weights, device=device, **init_options)
        self.show_progress, self.font = show_progress, font
        # mmdet's counters: the names of arrays' pictures and predictions, across calls
        self.num_visualized_imgs = 0
        self.num_predicted_imgs = 0

    def __call__(self, inputs, batch_size: int = 1, return_vis: bool = False, show: bool = False, wait_time: float = 0,
                 no_save_vis: bool = False, draw_pred: bool = True, pred_score_thr: float = 0.3,
                 return_datasamples: bool = False, print_result: bool = False, no_save_pred: bool = True,
                 out_dir: str | os.PathLike = "", **options) -> dict:
        """``{"predictions": [a dict per image, in order], "visualization": [an RGB array per image
        drawn]}`` (pictures when ``return_vis`` or saved to ``out_dir``; else ``[]``). With
        ``return_datasamples`` the predictions are ``Detections`` (mmdet's ``DetDataSample``)."""
        if options:
            raise BertDetrError(f"DetInferencer takes {', '.join(CALL_OPTIONS)}, not {', '.join(sorted(options))}")
        if show:
            raise BertDetrError("show (a window) is not offered: save the pictures with out_dir, or return_vis=True")
        batch_size = check_count("batch_size", batch_size, 1)
        if isinstance(pred_score_thr, bool) or not isinstance(pred_score_thr, (int, float)):
            raise BertDetrError(f"pred_score_thr must be a number, got {pred_score_thr!r}")
        out_dir = os.fspath(out_dir)
        images = self._inputs_to_list(inputs)
        detections = self._detect(images, batch_size)
        vis_dir = "" if no_save_vis or not out_dir else os.path.join(out_dir, "vis")
        pred_dir = "" if no_save_pred or not out_dir else os.path.join(out_dir, "preds")
        saving_preds = bool(pred_dir) and not return_datasamples
        names = self.output_names(images, bool(vis_dir or return_vis), bool(vis_dir), saving_preds)
        results: dict = {"predictions": [], "visualization": []}
        for image, det, (vis_name, pred_name) in zip(images, detections, names):
            if vis_dir or return_vis:
                # (a picture only returned needs no name: "", its count taken in output_names)
                results["visualization"].append(self.visualize(image, det, draw_pred, pred_score_thr, vis_dir,
                                                               vis_name or ""))
            prediction = det if return_datasamples else pred2dict(det)
            if saving_preds:
                self._save_prediction(prediction, pred_dir, pred_name)
            if print_result:
                print({"predictions": [prediction]})
            results["predictions"].append(prediction)
        return results

    def _inputs_to_list(self, inputs) -> list:
        """mmdet's: a folder is its image files; a list stays a list; anything else a list of one."""
        if isinstance(inputs, (str, os.PathLike)) and os.path.isdir(inputs):
            return folder_images(os.fspath(inputs), IMG_EXTENSIONS)
        return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]

    def output_names(self, images: Sequence, visualizing: bool, saving_vis: bool,
                     saving_preds: bool) -> list[tuple[str | None, str | None]]:
        """Each image's (picture file name, predictions file name) in this call, None where that
        file is not written, advancing mmdet's counters as its ``visualize`` and ``pred2dict`` do
        (pictures: every image drawn, ``visualizing``; predictions: every array saved).

        mmdet names a file's outputs by its base name, so two inputs of one call with one stem
        (``a.jpg`` and ``a.png``; ``a.jpg`` in two folders) write over each other and a result is
        lost without a word. Here the later ones get ``<stem>_1`` (``_2``, ...) for both their
        files, a name no other input of the call has, with one warning naming them; the others
        keep mmdet's names. Names are compared ignoring case (a case-insensitive file system would
        overwrite too). One file given twice is one result and keeps its names.
        (``predict.image_ids`` does not fit: it renames every file once two collide.)"""
        natural, keys = [], []
        for image in images:
            vis = pred = key = None
            if isinstance(image, (str, os.PathLike)):
                key = os.path.abspath(os.fspath(image))
                base = os.path.basename(key)
                vis, pred = base, os.path.splitext(base)[0] + ".json"
            else:
                vis = f"{self.num_visualized_imgs:08d}.jpg"
                if saving_preds:
                    pred = f"{self.num_predicted_imgs}.json"
                    self.num_predicted_imgs += 1
            if visualizing:
                self.num_visualized_imgs += 1
            natural.append((vis if saving_vis else None, pred if saving_preds else None))
            keys.append(key)
        if not (saving_vis or saving_preds):
            return natural
        # every input's own names are kept free for it; a renamed one takes none of them
        taken = [{n.casefold() for n in kind if n is not None} for kind in zip(*natural)] if natural else []
        used: list[set[str]] = [set(), set()]
        out: list[tuple[str | None, str | None]] = []
        first_of: dict[str, tuple] = {}
        renamed: list[str] = []
        for image, key, names in zip(images, keys, natural):
            if key is not None and key in first_of:
                out.append(first_of[key])  # the same file again: the same result, the same files
                continue
            chosen = names
            if _clash(names, used):
                suffix = 1
                while _clash(chosen := _suffixed(names, suffix), used) or _clash(chosen, taken):
                    suffix += 1
                shown = " and ".join(n for n in chosen if n is not None)
                renamed.append(f"{key if key is not None else 'an array'} as {shown}")
            for kind, n in zip(used, chosen):
                if n is not None:
                    kind.add(n.casefold())
            if key is not None:
                first_of[key] = chosen
            out.append(chosen)
        if renamed:
            more = f"; and {len(renamed) - 5} more" if len(renamed) > 5 else ""
            warn_at_caller(f"DetInferencer: {len(renamed)} input(s) share a file name with an earlier one: written "
                           f"under other names so that none overwrites another: {'; '.join(renamed[:5])}{more}")
        return out

    def _detect(self, images: Sequence, batch_size: int) -> list[Detections]:
        """``inference_detector``'s detections of each image, those of one size ``batch_size`` at a time."""
        detector = self.detector
        prepared = ((k, prepare_input(detector, image, k, FOLDER_HINT)) for k, image in enumerate(images))
        found: list = [None] * len(images)
        bar = None
        if self.show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(images), desc="Inference", unit=" images", file=sys.stderr, disable=None)
        for group in batches_of_one_size(prepared, batch_size):
            dets = detect_batch(detector.model, [p.tensor for _, p in group], [p.scale_factor for _, p in group],
                                detector.config.test_cfg.max_per_img)
            for (k, p), det in zip(group, dets):
                found[k] = to_detections(detector, det, p.image)
            if bar is not None:
                bar.update(len(group))
        if bar is not None:
            bar.close()
        return found

    def visualize(self, image, det: Detections, draw_pred: bool, pred_score_thr: float, vis_dir: str,
                  name: str | None = None) -> np.ndarray:
        """The picture of one image (its detections scoring at least ``pred_score_thr`` drawn, or
        none without ``draw_pred``) as an RGB array, saved as ``vis_dir/<name>`` when ``vis_dir``
        is given: ``name`` as ``output_names`` chose it, else mmdet's (the file name; an array's
        the count of pictures so far, ``00000000.jpg``)."""
        # at the image's own size, as mmdet's visualizer draws (``draw`` enlarges small ones by default)
        picture = draw(det, pred_score_thr, self.detector.class_names, self.font, min_side=0) if draw_pred \
            else det.image.copy()
        if name is None:
            if isinstance(image, (str, os.PathLike)):
                name = os.path.basename(os.fspath(image))
            else:
                name = f"{self.num_visualized_imgs:08d}.jpg"
            self.num_visualized_imgs += 1
        if vis_dir:
            save_picture(picture, os.path.join(vis_dir, name))
        return np.asarray(picture)

    def _save_prediction(self, prediction: dict, pred_dir: str, name: str) -> None:
        """``prediction`` as ``pred_dir/<name>`` (``output_names`` chose it, mmdet's where unique)."""
        os.makedirs(pred_dir, exist_ok=True)
        with atomic_output(os.path.join(pred_dir, name), "w") as f:
            json.dump(prediction, f)


def _suffixed(names: tuple, suffix: int) -> tuple:
    """``names`` (file names or None) with ``_<suffix>`` after each stem: ``a.jpg`` -> ``a_1.jpg``."""
    return tuple(None if n is None else f"{os.path.splitext(n)[0]}_{suffix}{os.path.splitext(n)[1]}" for n in names)


def _clash(names: tuple, taken: Sequence[set[str]]) -> bool:
    """Whether any of ``names`` is in its kind's set of ``taken`` (casefolded) names."""
    return any(n is not None and n.casefold() in kind for n, kind in zip(names, taken))


def pred2dict(det: Detections) -> dict:
    """mmdet's ``pred2dict``: ``labels``, ``scores`` and ``bboxes`` (x1, y1, x2, y2) as lists."""
    return {"labels": det.labels.tolist(), "scores": det.scores.tolist(), "bboxes": det.boxes.tolist()}


def save_picture(picture: Image.Image, path: str) -> None:
    """``picture`` written atomically in the format of ``path``'s extension (JPEG at quality 95,
    as ``mmcv.imwrite``'s OpenCV default)."""
    ext = os.path.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise BertDetrError(f"cannot write a picture as {path}: no image format for {ext!r}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_output(path, "wb") as f:
        picture.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))

"""``bertdetr detr predict``: detections on image files, as COCO results and as pictures."""

from __future__ import annotations

import glob
import os

import torch

from bertdetr.detr.data.coco import MAX_PIXELS, ImageLoadError
from bertdetr.detr.evaluate import to_coco_results, write_results
from bertdetr.detr.data.pipelines import check_pipeline, prepare_image
from bertdetr.detr.postprocess import DetrPostProcess
from bertdetr.detr.visualize import draw_detections
from bertdetr.detr.weights import load_checkpoint_dir
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output, check_writable


@torch.no_grad()
def detect_prepared(model, tensor: torch.Tensor, scale_factor: tuple[float, float], max_per_img: int = 100) -> dict:
    """Detections of one pipeline output (``tensor`` [3,h,w]; ``scale_factor`` (w_scale, h_scale)
    back to the original image): ``boxes`` [K,4] pixel xyxy of the original image, ``scores`` [K],
    ``labels`` [K], best first."""
    device = next(model.parameters()).device
    h, w = tensor.shape[1:]
    outputs = model(tensor[None].to(device), None)  # one image: nothing padded
    det = DetrPostProcess(max_per_img)(outputs, [(h, w)], [scale_factor])[0]
    return {k: v.cpu() for k, v in det.items()}


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def expand_images(paths: list[str]) -> list[str]:
    """Image files of ``paths``: files as given, a folder's image files (by extension, sorted) and
    globs' matches (sorted); a path that names nothing is an error naming it."""
    files, missing = [], []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, n)))
            if not found:
                raise BertDetrError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
            files += found
        elif glob.has_magic(path):
            found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
            if not found:
                missing.append(path)
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            missing.append(path)
    if missing:
        raise BertDetrError(f"image file(s) not found: {', '.join(missing)}")
    return files


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise BertDetrError(f"threshold is a score between 0 and 1, got {threshold}")


def predict_images(checkpoint: str, images: list[str], out_dir: str, threshold: float = 0.5,
                   test_size: int | None = None, max_size: int | None = None, device: str | None = None,
                   pipeline: str | None = None, max_pixels: int | None = MAX_PIXELS) -> list[str]:
    """Writes ``out_dir/results.json`` (COCO format; ``image_id`` is the file name) and one
    ``<name>.png`` per image with the detections scoring >= ``threshold``; returns the PNG paths.
    ``images`` are files, folders (their image files) or globs. Images go through ``pipeline``
    (default: the one recorded with the checkpoint, see ``pipelines``) at ``test_size`` /
    ``max_size`` (default: the checkpoint's recorded test scale).

    An image that cannot be read, has more than ``max_pixels`` pixels or is too thin to resize is
    reported by name and passed over; the others' pictures and results are written, then a
    ``BertDetrError`` lists what was passed over (the command exits 2)."""
    check_threshold(threshold)
    check_writable(os.path.join(out_dir, "results.json"))
    images = expand_images(images)
    ckpt = load_checkpoint_dir(checkpoint, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipeline = check_pipeline(pipeline) if pipeline else ckpt.pipeline
    test_size, max_size = test_size or ckpt.test_size, max_size or ckpt.max_size
    model, config, category_ids, names = ckpt.model, ckpt.config, ckpt.category_ids, ckpt.class_names
    results, written, failed = [], [], []
    for path in images:
        try:
            prepared = prepare_image(path, pipeline, test_size, max_size, max_pixels)
        except ImageLoadError as e:
            print(f"passed over {path}: {e}")
            failed.append(f"{path} ({e})")
            continue
        det = detect_prepared(model, prepared.tensor, prepared.scale_factor, config.test_cfg.max_per_img)
        name = os.path.basename(path)
        results += to_coco_results(name, det["boxes"], det["scores"], det["labels"], category_ids)
        picture = draw_detections(prepared.image, det["boxes"].numpy(), det["scores"].numpy(), det["labels"].numpy(),
                                  names, threshold)
        target = os.path.join(out_dir, os.path.splitext(name)[0] + ".png")
        with atomic_output(target, "wb") as f:
            picture.save(f, format="PNG")
        written.append(target)
    write_results(results, os.path.join(out_dir, "results.json"))
    if failed:
        raise BertDetrError(f"{len(failed)} of {len(images)} image(s) could not be used (the others' results are "
                            f"in {os.path.join(out_dir, 'results.json')}): " + "; ".join(failed))
    return written

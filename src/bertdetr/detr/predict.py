"""``bertdetr detr predict``: detections on image files, as COCO results and as pictures."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import glob
import os
from typing import Iterable, Iterator, Sequence

import torch
from PIL import Image

from bertdetr.detr.data.coco import MAX_PIXELS, ImageLoadError
from bertdetr.detr.evaluate import to_coco_results, write_results
from bertdetr.detr.data.pipelines import PreparedImage, check_pipeline, prepare_image
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
    return detect_batch(model, [tensor], [scale_factor], max_per_img)[0]


@torch.no_grad()
def detect_batch(model, tensors: Sequence[torch.Tensor], scale_factors: Sequence[tuple[float, float]],
                 max_per_img: int = 100) -> list[dict]:
    """``detect_prepared`` of B pipeline outputs of one size ([3,h,w] each), run as one batch
    [B,3,h,w]. Nothing is padded (no mask), so each image's detections are those it has alone, up
    to the float rounding of a batched convolution; official DETR and transformers pad images of
    other sizes into a batch, which changes the backbone's pixels at the edges, so
    ``batches_of_one_size`` never mixes sizes."""
    h, w = tensors[0].shape[1:]
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"detect_batch takes images of one size, got {sorted({tuple(t.shape) for t in tensors})}")
    device = next(model.parameters()).device
    outputs = model(torch.stack(list(tensors)).to(device), None)
    dets = DetrPostProcess(max_per_img)(outputs, [(h, w)] * len(tensors), list(scale_factors))
    return [{k: v.cpu() for k, v in det.items()} for det in dets]


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


class ImageFiles(torch.utils.data.Dataset):
    """Image files through a test pipeline, for a ``DataLoader`` whose workers decode ahead of
    the model: item k is ``(k, PreparedImage)``, or ``(k, ImageLoadError)`` for a file that cannot
    be used (reported by name, the others go on). Without pictures the decoded original is not
    kept (``image`` None), so workers do not send it back."""

    def __init__(self, files: Sequence[str], pipeline: str, test_size: int, max_size: int,
                 max_pixels: int | None, keep_image: bool = True):
        self.files, self.pipeline, self.keep_image = list(files), pipeline, keep_image
        self.test_size, self.max_size, self.max_pixels = test_size, max_size, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, k: int) -> tuple[int, PreparedImage | ImageLoadError]:
        try:
            prepared = prepare_image(self.files[k], self.pipeline, self.test_size, self.max_size, self.max_pixels)
        except ImageLoadError as e:
            return k, e
        return k, prepared if self.keep_image else dataclasses.replace(prepared, image=None)


def image_loader(dataset: ImageFiles, num_workers: int) -> Iterable[tuple[int, PreparedImage | ImageLoadError]]:
    """``dataset``'s items in order: decoded in ``num_workers`` processes ahead of the model (a
    ``DataLoader`` without batching: ``batches_of_one_size`` groups them), or here with 0."""
    if num_workers == 0:
        return (dataset[k] for k in range(len(dataset)))
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                                       collate_fn=_as_is, prefetch_factor=4)


def _as_is(item):
    return item


class PictureWriter:
    """Draws the detections on their image and saves the PNG on ``threads`` threads (PIL's drawing
    and its zlib encoding let go of the GIL), so the model does not wait for them; at most
    ``2 * threads`` wait. Each file is written atomically. PNGs are written at zlib level 1: the
    same pixels as the default level 6, 3.7x faster to write, files about 20% larger (measured on
    a 1600x1200 photo)."""

    def __init__(self, class_names: Sequence[str], threshold: float, threads: int = 2):
        self.class_names, self.threshold = class_names, threshold
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="picture")
        self.pending: collections.deque = collections.deque()
        self.limit = 2 * threads

    def submit(self, image: Image.Image, det: dict, target: str) -> None:
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, image, det, target))

    def _write(self, image: Image.Image, det: dict, target: str) -> None:
        picture = draw_detections(image, det["boxes"].numpy(), det["scores"].numpy(), det["labels"].numpy(),
                                  self.class_names, self.threshold)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        with atomic_output(target, "wb") as f:
            picture.save(f, format="PNG", compress_level=1)

    def close(self) -> None:
        """Waits for every picture (raising the first error of any)."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def expand_images(paths: list[str]) -> list[str]:
    """Image files of ``paths``: files as given, a folder's image files (by extension, sorted) and
    globs' matches (sorted); a path that names nothing is an error naming it. A file named twice
    (a folder and a file in it) is read once, where it first comes."""
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
    seen: set[str] = set()
    return [f for f in files if not (os.path.abspath(f) in seen or seen.add(os.path.abspath(f)))]


def image_ids(files: Sequence[str]) -> list[str]:
    """Each file's ``image_id`` in ``results.json``: its file name, or where two files would have
    one picture name (``frame.jpg`` in two folders; ``a.jpg`` beside ``a.png``) the paths below
    the files' common folder, so no picture overwrites another."""
    names = [os.path.basename(f) for f in files]
    if len(set(picture_names(names))) == len(names):
        return names
    absolute = [os.path.abspath(f) for f in files]
    common = os.path.commonpath([os.path.dirname(a) for a in absolute])
    return [os.path.relpath(a, common).replace(os.sep, "/") for a in absolute]


def picture_names(ids: Sequence[str]) -> list[str]:
    """The pictures' file names (below the output folder) of ``image_ids``: the name with ``.png``
    for its extension, or added to it where that is not unique (``a.jpg.png``, ``a.png.png``)."""
    names = [os.path.splitext(i)[0] + ".png" for i in ids]
    return names if len(set(names)) == len(names) else [i + ".png" for i in ids]


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise BertDetrError(f"threshold is a score between 0 and 1, got {threshold}")


def predict_images(checkpoint: str, images: list[str], out_dir: str, threshold: float = 0.5,
                   test_size: int | None = None, max_size: int | None = None, device: str | None = None,
                   pipeline: str | None = None, max_pixels: int | None = MAX_PIXELS, batch_size: int = 1,
                   num_workers: int | None = None, save_vis: bool = True, progress: bool = False) -> list[str]:
    """Writes ``out_dir/results.json`` (COCO format; ``image_id`` is the file name, see
    ``image_ids``) and one ``<name>.png`` per image with the detections scoring >= ``threshold``
    (none with ``save_vis`` false); returns the PNG paths. ``images`` are files, folders (their
    image files) or globs. Images go through ``pipeline`` (default: the one recorded with the
    checkpoint, see ``pipelines``) at ``test_size`` / ``max_size`` (default: the checkpoint's
    recorded test scale).

    To keep a GPU fed: images are decoded by ``num_workers`` loader processes (default: 4 on a
    GPU, at most the CPUs less one; none on a CPU, where the model takes the cores), run
    ``batch_size`` at a time where they have one size after resizing (``batches_of_one_size``;
    the same detections as one at a time), and pictures are drawn and saved on threads.

    An image that cannot be read, has more than ``max_pixels`` pixels or is too thin to resize is
    reported by name and passed over; the others' pictures and results are written, then a
    ``BertDetrError`` lists what was passed over (the command exits 2)."""
    check_threshold(threshold)
    batch_size, num_workers = check_count("batch_size", batch_size, 1), check_count("num_workers", num_workers, 0)
    check_writable(os.path.join(out_dir, "results.json"))
    files = expand_images(images)
    ids = image_ids(files)
    targets = [os.path.join(out_dir, name) for name in picture_names(ids)]
    ckpt = load_checkpoint_dir(checkpoint, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = next(ckpt.model.parameters()).device.type != "cpu"
    if num_workers is None:
        num_workers = default_num_workers(on_gpu)
    pipeline = check_pipeline(pipeline) if pipeline else ckpt.pipeline
    dataset = ImageFiles(files, pipeline, test_size or ckpt.test_size, max_size or ckpt.max_size, max_pixels, save_vis)
    dets: list[dict | None] = [None] * len(files)
    failed: list[str] = []
    bar = _progress_bar(len(files)) if progress else None
    say = bar.write if bar is not None else print
    writer = PictureWriter(ckpt.class_names, threshold, threads=2 if on_gpu else 1) if save_vis else None
    try:
        for group in batches_of_one_size(image_loader(dataset, num_workers), batch_size):
            if isinstance(group[0][1], ImageLoadError):
                k, error = group[0]
                say(f"passed over {files[k]}: {error}")
                failed.append(f"{files[k]} ({error})")
            else:
                found = detect_batch(ckpt.model, [p.tensor for _, p in group], [p.scale_factor for _, p in group],
                                     ckpt.config.test_cfg.max_per_img)
                for (k, prepared), det in zip(group, found):
                    dets[k] = det
                    if writer is not None:
                        writer.submit(prepared.image, det, targets[k])
            if bar is not None:
                bar.update(len(group))
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    results = [r for k, det in enumerate(dets) if det is not None
               for r in to_coco_results(ids[k], det["boxes"], det["scores"], det["labels"], ckpt.category_ids)]
    write_results(results, os.path.join(out_dir, "results.json"))
    if failed:
        raise BertDetrError(f"{len(failed)} of {len(files)} image(s) could not be used (the others' results are "
                            f"in {os.path.join(out_dir, 'results.json')}): " + "; ".join(failed))
    return [t for t, det in zip(targets, dets) if det is not None] if save_vis else []


def default_num_workers(on_gpu: bool) -> int:
    """Decoding processes of ``detr predict`` and ``detr eval`` when not given: 4 on a GPU (at most
    the CPUs less one), none on a CPU, where the model takes the cores (BENCHMARKS.md: a worker
    there only adds the tensors' trip through shared memory)."""
    return min(4, max((os.cpu_count() or 1) - 1, 0)) if on_gpu else 0


def check_count(name: str, value, minimum: int) -> int | None:
    """``value`` if None or an int >= ``minimum``, else a ``BertDetrError`` naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BertDetrError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _progress_bar(total: int):
    import sys

    from tqdm import tqdm

    # on a terminal only (disable=None): a log file or a caller reading stderr gets no bar lines
    return tqdm(total=total, unit=" images", desc="predict", file=sys.stderr, dynamic_ncols=True, disable=None)

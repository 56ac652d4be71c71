"""``bertdetr detr predict``: detections on image files, as COCO results and as pictures."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import glob
import json
import os
import threading
from typing import Callable, Iterable, Iterator, Sequence

import torch
from PIL import Image

from bertdetr.detr.data.coco import MAX_PIXELS, ImageLoadError
from bertdetr.detr.evaluate import to_coco_results, write_results
from bertdetr.detr.data.pipelines import PreparedImage, batches_of_one_size, check_pipeline, prepare_image
from bertdetr.detr.postprocess import DetrPostProcess
from bertdetr.detr.visualize import draw_detections, tag_font
from bertdetr.detr.weights import load_checkpoint_dir
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output, check_writable
from bertdetr.training.precision import autocast_to, inference_dtype


@torch.no_grad()
def detect_prepared(model, tensor: torch.Tensor, scale_factor: tuple[float, float], max_per_img: int = 100) -> dict:
    """Detections of one pipeline output (``tensor`` [3,h,w]; ``scale_factor`` (w_scale, h_scale)
    back to the original image): ``boxes`` [K,4] pixel xyxy of the original image, ``scores`` [K],
    ``labels`` [K], best first."""
    return detect_batch(model, [tensor], [scale_factor], max_per_img)[0]


@torch.no_grad()
def detect_batch(model, tensors: Sequence[torch.Tensor], scale_factors: Sequence[tuple[float, float]],
                 max_per_img: int = 100, dtype: torch.dtype | None = None) -> list[dict]:
    """``detect_prepared`` of B pipeline outputs of one size ([3,h,w] each), run as one batch
    [B,3,h,w]. Nothing is padded (no mask), so each image's detections are those it has alone, up
    to the float rounding of a batched convolution; official DETR and transformers pad images of
    other sizes into a batch, which changes the backbone's pixels at the edges, so
    ``batches_of_one_size`` never mixes sizes. ``dtype``: the model under autocast to bf16 or fp16
    (the post-processing in float32)."""
    h, w = tensors[0].shape[1:]
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"detect_batch takes images of one size, got {sorted({tuple(t.shape) for t in tensors})}")
    device = next(model.parameters()).device
    with autocast_to(device, dtype):
        outputs = model(torch.stack(list(tensors)).to(device), None)
    dets = DetrPostProcess(max_per_img)(outputs, [(h, w)] * len(tensors), list(scale_factors))
    return [{k: v.cpu() for k, v in det.items()} for det in dets]


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


def image_loader(dataset: torch.utils.data.Dataset, num_workers: int) -> Iterable[tuple[int, PreparedImage | ImageLoadError]]:
    """``dataset``'s items (``ImageFiles``'s, or any of ``(k, PreparedImage | ImageLoadError)``) in
    order: decoded in ``num_workers`` processes ahead of the model (a ``DataLoader`` without
    batching: ``batches_of_one_size`` groups them), or here with 0."""
    if num_workers == 0:
        return (dataset[k] for k in range(len(dataset)))
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                                       collate_fn=_as_is, prefetch_factor=4,
                                       generator=torch.Generator())  # (not a seed drawn from the caller's RNG)


def _as_is(item):
    return item


class PictureWriter:
    """Draws the detections on their image and saves the PNG on ``threads`` threads (PIL's drawing
    and its zlib encoding let go of the GIL), so the model does not wait for them; at most
    ``2 * threads`` wait. Each file is written atomically. PNGs are written at zlib level 1: the
    same pixels as the default level 6, 3.7x faster to write, files about 20% larger (measured on
    a 1600x1200 photo)."""

    def __init__(self, class_names: Sequence[str], threshold: float, threads: int = 2, font: str | None = None):
        self.class_names, self.threshold, self.font = class_names, threshold, font
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="picture")
        self.pending: collections.deque = collections.deque()
        self.limit = 2 * threads

    def submit(self, image: Image.Image, det: dict, target: str, then: Callable[[], None] | None = None) -> None:
        """Draws and saves the picture on a thread, then calls ``then`` (there)."""
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, image, det, target, then))

    def _write(self, image: Image.Image, det: dict, target: str, then: Callable[[], None] | None) -> None:
        picture = draw_detections(image, det["boxes"].numpy(), det["scores"].numpy(), det["labels"].numpy(),
                                  self.class_names, self.threshold, font=self.font)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        with atomic_output(target, "wb") as f:
            picture.save(f, format="PNG", compress_level=1)
        if then is not None:
            then()

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
            files += folder_images(path)
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


def folder_images(folder: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """The image files of ``folder`` (by extension, any case), in name order; none is an error."""
    found = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                   if n.lower().endswith(tuple(extensions)) and os.path.isfile(os.path.join(folder, n)))
    if not found:
        raise BertDetrError(f"no image files ({', '.join(extensions)}) in folder {folder}")
    return found


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


def check_apart_from_inputs(out_dir: str, files: list[str]) -> None:
    """The pictures go to a folder that holds none of the input images: there they could write over
    one (a ``<name>.png`` input) and would be read as inputs by the next run on that folder."""
    out = os.path.realpath(out_dir)
    inside = [f for f in files if os.path.dirname(os.path.realpath(f)) == out]
    if inside:
        raise BertDetrError(f"--out {out_dir} holds the input images ({os.path.basename(inside[0])}"
                            f"{f' and {len(inside) - 1} more' if len(inside) > 1 else ''}): the pictures "
                            "would be written among them (over a PNG of the same name); choose another --out folder")


def predict_images(checkpoint: str, images: list[str], out_dir: str, threshold: float = 0.5,
                   test_size: int | None = None, max_size: int | None = None, device: str | None = None,
                   pipeline: str | None = None, max_pixels: int | None = MAX_PIXELS, batch_size: int = 1,
                   num_workers: int | None = None, save_vis: bool = True, progress: bool = False,
                   resume: bool = False, overwrite: bool = False, font: str | None = None,
                   dtype: torch.dtype | str | None = None) -> list[str]:
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

    A stopped run loses nothing (``PartialResults``): each image's results are kept as it is done,
    ``resume`` goes on with the images not yet done, ``overwrite`` starts again; a folder holding
    a stopped run's results is an error without one of them.

    An image that cannot be read, has more than ``max_pixels`` pixels or is too thin to resize is
    reported by name and passed over; the others' pictures and results are written, then a
    ``BertDetrError`` lists what was passed over (the command exits 2). ``font``: the tags' font
    file (default: ``visualize.tag_font``'s choice; Chinese class names need a CJK font).
    ``dtype``: bf16 or fp16 autocast (``precision.inference_dtype``): detections close to float32's,
    not equal. ``test_size``, ``max_size``, ``max_pixels``: whole numbers >= 1 (``check_scale``).
    The ``official`` pipeline leaves EXIF orientation unapplied, as official DETR: a warning names
    the photos it runs as stored, turned from how a viewer shows them."""

    check_threshold(threshold)
    check_scale(test_size, max_size, max_pixels)  # 0 is not "the checkpoint's", nor -5 the image's fault
    dtype = inference_dtype(dtype)
    if font is not None:
        tag_font([], font)  # a font that cannot be read: an error before any work
    batch_size, num_workers = check_count("batch_size", batch_size, 1), check_count("num_workers", num_workers, 0)
    check_writable(os.path.join(out_dir, "results.json"))
    files = expand_images(images)
    ids = image_ids(files)
    targets = [os.path.join(out_dir, name) for name in picture_names(ids)]
    if save_vis:
        check_apart_from_inputs(out_dir, files)
    partial = PartialResults(os.path.join(out_dir, PARTIAL), resume, overwrite)
    ckpt = load_checkpoint_dir(checkpoint, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    partial.start()
    on_gpu = next(ckpt.model.parameters()).device.type != "cpu"
    per_image: list[list | None] = [partial.done.get(i) for i in ids]
    todo = [k for k, r in enumerate(per_image) if r is None]
    if partial.done:
        print(f"resuming: {len(files) - len(todo)} of {len(files)} images done before")
    pipeline = check_pipeline(pipeline) if pipeline else ckpt.pipeline
    dataset = ImageFiles([files[k] for k in todo], pipeline, ckpt.test_size if test_size is None else test_size,
                         ckpt.max_size if max_size is None else max_size, max_pixels, save_vis)
    loader = image_loader(dataset, default_num_workers(on_gpu) if num_workers is None else num_workers)
    failed: list[str] = []
    unturned: list[tuple[str, int]] = []  # (file, EXIF orientation) the pipeline left unapplied
    writer = PictureWriter(ckpt.class_names, threshold, 2 if on_gpu else 1, font) if save_vis else None
    bar = _progress_bar(len(files), len(files) - len(todo)) if progress else None
    with contextlib.ExitStack() as closing:  # on the way out, whatever happens: the pictures, then their lines
        for opened in (bar, partial, writer):
            if opened is not None:
                closing.callback(opened.close)
        for group in batches_of_one_size(loader, batch_size):
            if isinstance(group[0][1], ImageLoadError):
                k, error = todo[group[0][0]], group[0][1]
                (bar.write if bar is not None else print)(f"passed over {files[k]}: {error}")
                failed.append(f"{files[k]} ({error})")
            else:
                found = detect_batch(ckpt.model, [p.tensor for _, p in group], [p.scale_factor for _, p in group],
                                     ckpt.config.test_cfg.max_per_img, dtype)
                for (j, prepared), det in zip(group, found):
                    k = todo[j]
                    if prepared.exif_unapplied != 1:
                        unturned.append((files[k], prepared.exif_unapplied))
                    per_image[k] = to_coco_results(ids[k], det["boxes"], det["scores"], det["labels"],
                                                   ckpt.category_ids)
                    done = functools.partial(partial.add, ids[k], per_image[k])
                    if writer is not None:  # an image counts as done once its picture is saved
                        writer.submit(prepared.image, det, targets[k], done)
                    else:
                        done()
            if bar is not None:
                bar.update(len(group))
    write_results([r for found in per_image if found is not None for r in found], os.path.join(out_dir, "results.json"))
    partial.remove()
    if unturned:
        warn_exif_unapplied(unturned, len(todo))
    if failed:
        raise BertDetrError(f"{len(failed)} of {len(files)} image(s) could not be used (the others' results are "
                            f"in {os.path.join(out_dir, 'results.json')}): " + "; ".join(failed))
    return [t for t, found in zip(targets, per_image) if found is not None] if save_vis else []


def warn_exif_unapplied(unturned: Sequence[tuple[str, int]], total: int) -> None:
    """One line for the images whose EXIF orientation (file, orientation) the pipeline left
    unapplied: ``official``, as official DETR (a quirk kept on purpose), runs a photo stored turned
    as stored, so its detections and picture are not in the frame a viewer (or an annotation
    tool) shows it in."""
    import warnings

    f, turn = unturned[0]
    warnings.warn(f"{len(unturned)} of {total} images are stored turned or mirrored, with an EXIF orientation that the "
                  f"official pipeline does not apply, as official DETR does not ({'' if len(unturned) == 1 else 'e.g. '}"
                  f"{f}: orientation {turn}): their detections and pictures are in the stored pixels' frame, not the "
                  "one a viewer shows (nor an annotation of the photo as shown); --pipeline mmdet or bertdetr applies "
                  "the orientation", stacklevel=2)


def decoded_frames(files: Sequence[str], pipeline: str) -> list[tuple[int, int, int] | None]:
    """Per file, (width, height, EXIF orientation left unapplied) of the image ``pipeline`` decodes,
    the frame of its detections in ``results.json``, from the file's header (no decoding): the
    stored size turned by the EXIF orientation where the pipeline applies it (``mmdet``: OpenCV's
    ``IMREAD_COLOR``; ``bertdetr``: ``load_image``), as stored where it does not (``official``, which
    leaves the orientation unapplied). None for a file that cannot be read. For ``precision_recall``'s
    ``decoded`` (``detr predict --ann``)."""
    from bertdetr.detr.data.coco import pil_pixel_limit
    from bertdetr.detr.data.pipelines import TRANSPOSING_ORIENTATIONS, exif_orientation

    frames: list[tuple[int, int, int] | None] = []
    for path in files:
        try:
            with pil_pixel_limit(None), Image.open(path) as raw:  # (the header only: no limit to keep)
                (w, h), turn = raw.size, exif_orientation(raw)
        except (OSError, SyntaxError, ValueError):
            frames.append(None)
            continue
        if pipeline == "official":
            frames.append((w, h, turn))
        else:
            frames.append((h, w, 1) if turn in TRANSPOSING_ORIENTATIONS else (w, h, 1))
    return frames


PARTIAL = "results.partial.jsonl"
"""A running ``detr predict``'s results so far, an image a line (removed once results.json is written)."""


class PartialResults:
    """The results of a ``detr predict`` run as it goes, one JSON line an image (``{"image_id",
    "results"}``, flushed), so that a stopped run (preempted, killed, out of time) loses nothing:
    ``resume`` reads the lines back (``done``: image id -> its COCO results; a line cut short by
    the stop is dropped and its image done again) and appends; ``overwrite`` starts afresh. The
    picture threads and the main thread add lines, under a lock."""

    def __init__(self, path: str, resume: bool = False, overwrite: bool = False):
        self.path, self.lock, self.file = path, threading.Lock(), None
        found = dict(_read_lines(path)) if os.path.exists(path) else {}
        if found and not (resume or overwrite):
            raise BertDetrError(f"{os.path.dirname(path) or '.'} holds the results of {len(found)} image(s) of a run "
                                f"that stopped ({path}): --resume goes on from them, --overwrite starts again")
        self.done: dict[str, list] = found if resume else {}

    def start(self) -> None:
        """Writes the file anew with ``done``'s lines (a line cut short would swallow the next one),
        then appends."""
        with atomic_output(self.path, "w") as f:
            f.writelines(json.dumps({"image_id": i, "results": r}) + "\n" for i, r in self.done.items())
        self.file = open(self.path, "a", encoding="utf-8")

    def add(self, image_id: str, results: list) -> None:
        with self.lock:
            self.file.write(json.dumps({"image_id": image_id, "results": results}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def remove(self) -> None:
        os.remove(self.path)


def _read_lines(path: str) -> Iterator[tuple[str, list]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                yield row["image_id"], row["results"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short when the run stopped


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


def check_scale(test_size, max_size, max_pixels) -> None:
    """``BertDetrError`` naming the argument unless each is None or an int >= 1 (not a bool):
    ``init_detector``'s ``test_size``, ``max_size`` and ``max_pixels``, checked when the detector,
    pipeline or inferencer is built. Unchecked, ``"800"`` failed at the first image with a
    ``TypeError`` from inside the resize, -5 with a message blaming the image, 0 was read as "the
    checkpoint's", and ``max_pixels=0`` refused every image. ``check_count``'s check and
    message, as ``batch_size`` has."""
    check_count("test_size", test_size, 1)
    check_count("max_size", max_size, 1)
    check_count("max_pixels", max_pixels, 1)


def _progress_bar(total: int, initial: int = 0):
    import sys

    from tqdm import tqdm

    # on a terminal only (disable=None): a log file or a caller reading stderr gets no bar lines
    return tqdm(total=total, initial=initial, unit=" images", desc="predict", file=sys.stderr, dynamic_ncols=True,
                disable=None)

"""``detr train``'s batches: samplers, one DataLoader for the whole run, normalisation on the device.

As mmdet 3.x's training loader (``detr_r50_8xb2-150e_coco.py`` with ``coco_detection.py``):

- the DataLoader is built once (``TrainLoader``) and its workers persist from epoch to epoch
  (mmdet's ``persistent_workers=True``) instead of starting again, dataset and all, each epoch.
  The epoch an item belongs to travels with its index (``dataset[epoch, i]``), since a
  persistent worker's copy of the dataset never sees ``set_epoch``;
- batches are pinned on a GPU, so the ``non_blocking`` copy overlaps;
- items are uint8 pixels, and a batch is normalised on the device after the copy (mmdet's
  ``DetDataPreprocessor``): a worker decodes and augments only, and a quarter of float32's bytes
  crosses to the GPU;
- ``group_by_aspect_ratio``: mmdet's ``AspectRatioBatchSampler``, images with width >= height
  batched apart from the others, which pads less. Off by default: it changes which images share
  a batch, so a run's batches (and numbers) differ from one without it.

The order of an epoch is ``EpochSampler``'s, as before: a permutation seeded by (seed, epoch),
this rank's share of it; a run resumed at batch k of an epoch takes that epoch's batches from k on,
with or without grouping (the grouping of the whole epoch is made again and its first k skipped).
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

from bertdetr.detr.data.coco import CocoDetection, collate
from bertdetr.detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_into


class EpochSampler(torch.utils.data.Sampler):
    """This rank's indices of an epoch: a permutation seeded by (seed, epoch), every world_size-th
    index from ``rank`` (padded by wrapping so all ranks take equal steps), from ``start`` on."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, start: int = 0):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch)).tolist()
        per_rank = math.ceil(n / world_size)
        perm = (perm * math.ceil(per_rank * world_size / n))[: per_rank * world_size]
        self.indices = perm[rank::world_size][start:]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def aspect_ratio_batches(indices: Sequence[int], landscape: Sequence[bool], batch_size: int) -> list[list[int]]:
    """mmdet's ``AspectRatioBatchSampler`` (drop_last=False) over ``indices`` in their order: an
    index joins its bucket (``landscape[i]``: width >= height, else the other); a full bucket is a
    batch; at the end what is left, the portrait bucket's then the landscape one's, is cut in
    batches in that order (the last may mix)."""
    buckets: tuple[list[int], list[int]] = ([], [])
    batches = []
    for i in indices:
        bucket = buckets[1 if landscape[i] else 0]
        bucket.append(i)
        if len(bucket) == batch_size:
            batches.append(bucket[:])
            bucket.clear()
    left = buckets[0] + buckets[1]
    batches += [left[k:k + batch_size] for k in range(0, len(left), batch_size)]
    return batches


class EpochBatchSampler(torch.utils.data.Sampler):
    """The batches of an epoch from batch ``start`` on (``set_epoch``), each index paired with its
    epoch for ``CocoDetection``: ``EpochSampler``'s order cut in ``batch_size`` (the last short),
    or grouped by aspect ratio (``aspect_ratio_batches``) when ``landscape`` is given."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 landscape: Sequence[bool] | None = None):
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.landscape = landscape
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def epoch_batches(self) -> list[list[int]]:
        """Every batch of the epoch, from its first."""
        indices = EpochSampler(self.n, self.seed, self.epoch, self.rank, self.world_size).indices
        if self.landscape is not None:
            return aspect_ratio_batches(indices, self.landscape, self.batch_size)
        return [indices[k:k + self.batch_size] for k in range(0, len(indices), self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.epoch_batches()[self.start:]:
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return max(math.ceil(math.ceil(self.n / self.world_size) / self.batch_size) - self.start, 0)


class BatchNormalizer:
    """A batch's images on ``device``, normalised there: uint8 [B,3,H,W] (``collate`` of
    ``ToImageTensor`` items) -> float32 [B,3,H,W] contiguous, each image's region as
    ``ToNormalizedTensor`` makes it (the same float32 operations: equal numbers), zero padding
    (as ``collate`` pads normalised images). Float batches (normalised already) only move."""

    def __init__(self, device: torch.device, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.device = device
        # made once: a tensor made from a list on a GPU would wait for the copy each batch
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None].to(device)
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None].to(device)

    def __call__(self, batch: dict | None) -> dict | None:
        if batch is None or batch["images"].dtype != torch.uint8:
            return batch
        pixels = batch["images"].to(self.device, non_blocking=True)
        images = torch.zeros(pixels.shape, dtype=torch.float32, device=self.device)
        for i, target in enumerate(batch["targets"]):
            h, w = (int(v) for v in target["size"])  # a host tensor: no read from the device
            normalize_into(images[i, :, :h, :w], pixels[i, :, :h, :w], self.mean, self.std)
        return {**batch, "images": images}


def _worker_init(worker_id: int) -> None:
    """A worker ignores the stop signals (the main process checkpoints and stops them) and runs
    OpenCV on its own thread, as mmengine's ``opencv_num_threads=0``: the workers are the
    parallelism, and OpenCV's own threads would contend with them and with the step."""
    import cv2

    from bertdetr.training.run import ignore_stop_signals

    cv2.setNumThreads(0)
    ignore_stop_signals(worker_id)


class TrainLoader:
    """``detr train``'s batches, epoch after epoch, from one DataLoader (persistent workers when
    ``num_workers`` > 0; batches pinned on a GPU; images normalised on ``device``).

    ``epoch(e, start)`` yields epoch ``e``'s batches from batch ``start`` on, each with its images
    on the device (float32, normalised; None for a batch whose every image was unreadable): the
    same batches whatever ``num_workers``, and the same as the DataLoader built each epoch before."""

    def __init__(self, dataset: CocoDetection, batch_size: int, seed: int, device: torch.device, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, group_by_aspect_ratio: bool = False):
        landscape = ([im["width"] >= im["height"] for im in dataset.index.images] if group_by_aspect_ratio
                     else None)
        self.dataset = dataset
        self.sampler = EpochBatchSampler(len(dataset), batch_size, seed, rank, world_size, landscape)
        self.normalize = BatchNormalizer(device)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=num_workers, collate_fn=collate,
            worker_init_fn=_worker_init, pin_memory=device.type == "cuda",  # non_blocking copies overlap
            persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict | None]:
        self.dataset.set_epoch(epoch)  # for code that indexes the dataset by position alone
        self.sampler.set_epoch(epoch, start)
        for batch in self.loader:
            yield self.normalize(batch)

    def close(self) -> None:
        """Stops the workers as the run ends (the DataLoader's iterator stops them when it goes),
        not whenever the garbage collector gets to the run's objects."""
        self.loader = None

"""detr train's loader (``bertdetr.detr.data.loader``): the batches of the DataLoader built each
epoch before (same order, same numbers), persistent workers, mmdet's aspect-ratio grouping."""

import itertools

import pytest
import torch

from bertdetr.detr.data.coco import CocoDetection, collate, load_coco
from bertdetr.detr.data.loader import EpochBatchSampler, EpochSampler, TrainLoader, aspect_ratio_batches
from bertdetr.detr.data.shapes import ShapesConfig, make_shapes
from bertdetr.detr.data.transforms import train_transforms

SIZES = {"scales": (32, 48), "max_size": 80, "crop_resize": (40,), "crop_size": (24, 36)}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, "train", ShapesConfig(num_images=11, min_size=24, max_size=48, max_objects=2, seed=1))
    return load_coco(root / "train.json", root / "images")


def _before(index, seed, epoch, start, batch_size):
    """The epoch as train_one_epoch made it before: a DataLoader per epoch over EpochSampler's
    indices from ``start``, images normalised one by one in the dataset."""
    dataset = CocoDetection(index, train_transforms(**SIZES), seed=seed, decode="pil")
    dataset.set_epoch(epoch)
    sampler = EpochSampler(len(dataset), seed, epoch, start=start * batch_size)
    return list(torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate))


def _same(a, b) -> bool:
    return (torch.equal(a["images"], b["images"]) and torch.equal(a["masks"], b["masks"])
            and all(x["image_id"] == y["image_id"] and torch.equal(x["boxes"], y["boxes"])
                    and torch.equal(x["labels"], y["labels"]) for x, y in zip(a["targets"], b["targets"], strict=True)))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_equal_the_per_epoch_dataloaders_with_persistent_workers(index, num_workers):
    """With ``image_backend`` "pil" and no grouping, the loader's batches (normalised after
    collation) are the old ones exactly, epoch after epoch from one DataLoader, whether an epoch
    starts at its first batch or mid-way (a resume) and after an epoch left unfinished."""
    dataset = CocoDetection(index, train_transforms(**SIZES, normalize=False), seed=3, decode="pil")
    loader = TrainLoader(dataset, 3, 3, torch.device("cpu"), num_workers=num_workers)
    assert loader.loader.persistent_workers == (num_workers > 0)
    first = next(iter(loader.epoch(0)))  # an epoch left after one batch
    assert _same(first, _before(index, 3, 0, 0, 3)[0])
    for epoch, start in ((1, 0), (2, 2), (0, 1)):
        got = list(loader.epoch(epoch, start))
        expected = _before(index, 3, epoch, start, 3)
        assert len(got) == len(expected) == 4 - start
        assert all(_same(a, b) for a, b in zip(got, expected)), (epoch, start)


def test_aspect_ratio_batches_are_mmdets_buckets():
    landscape = [True, False, True, True, False, False, True, True]
    # 0 L, 1 P, 2 L -> [0, 2]; 3 L, 4 P -> [1, 4]; 5 P, 6 L -> [3, 6]; 7 L; left: [5] + [7]
    assert aspect_ratio_batches(range(8), landscape, 2) == [[0, 2], [1, 4], [3, 6], [5, 7]]
    assert aspect_ratio_batches([6, 5, 4], landscape, 4) == [[5, 4, 6]]  # portrait bucket first


def test_grouped_epochs_keep_the_order_group_and_resume(index):
    """Grouping: every index of the epoch once, in EpochSampler's order within each bucket; each
    batch of one orientation but those cut from what is left at the end; as many batches as
    without it; a resume at batch k takes the grouped epoch's batches from k."""
    landscape = [im["width"] >= im["height"] for im in index.images]
    assert 0 < sum(landscape) < len(landscape)
    for epoch, batch_size, world_size in itertools.product((0, 1, 5), (2, 3), (1, 2)):
        for rank in range(world_size):
            sampler = EpochBatchSampler(len(landscape), batch_size, 7, rank, world_size, landscape)
            sampler.set_epoch(epoch)
            batches = sampler.epoch_batches()
            order = EpochSampler(len(landscape), 7, epoch, rank, world_size).indices
            assert sorted(sum(batches, [])) == sorted(order) and len(batches) == len(sampler)
            full = [b for b in batches if len(b) == batch_size]
            mixed = [b for b in batches if len({landscape[i] for i in b}) > 1]
            assert len(mixed) <= 1 and all(b in batches[-2:] for b in mixed)
            assert all(len({landscape[i] for i in b}) == 1 for b in full if b not in mixed)
            for side in (True, False):  # each bucket keeps the epoch's order
                in_order = [i for i in order if landscape[i] == side]
                got = [i for b in batches for i in b if landscape[i] == side]
                assert got == in_order
            sampler.set_epoch(epoch, 2)
            assert [[i for _, i in b] for b in sampler] == batches[2:]
            assert all(e == epoch for b in sampler for e, _ in b)


def test_grouping_changes_the_batches_and_is_off_by_default(index):
    dataset = CocoDetection(index, train_transforms(**SIZES, normalize=False), seed=0)
    plain = TrainLoader(dataset, 2, 0, torch.device("cpu"))
    grouped = TrainLoader(dataset, 2, 0, torch.device("cpu"), group_by_aspect_ratio=True)
    assert plain.sampler.landscape is None
    ids = [[[t["image_id"] for t in b["targets"]] for b in loader.epoch(0)] for loader in (plain, grouped)]
    assert ids[0] != ids[1] and sorted(sum(ids[0], [])) == sorted(sum(ids[1], []))
    shapes = {im["id"]: im["width"] >= im["height"] for im in index.images}
    assert all(len({shapes[i] for i in b}) == 1 for b in ids[1][:-1])


def test_unreadable_batches_stay_none(index, tmp_path):
    from bertdetr.detr.data.coco import CocoIndex

    broken = CocoIndex(str(tmp_path), [dict(im, file_name="missing.png") for im in index.images[:2]],
                       index.category_ids, index.class_names, index.stats)
    dataset = CocoDetection(broken, train_transforms(**SIZES, normalize=False))
    with pytest.warns(UserWarning, match="skipping image"):
        assert list(TrainLoader(dataset, 2, 0, torch.device("cpu")).epoch(0)) == [None]


def test_float_batches_only_move():
    from bertdetr.detr.data.loader import BatchNormalizer

    batch = collate([(torch.randn(3, 4, 5), {"size": torch.tensor([4, 5])})])
    assert BatchNormalizer(torch.device("cpu"))(batch)["images"] is batch["images"]
    assert BatchNormalizer(torch.device("cpu"))(None) is None

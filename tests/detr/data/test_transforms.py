import random

import numpy as np
import pytest
import torch
from PIL import Image

from bertdetr.detr.data.transforms import (
    RandomSizeCrop,
    ToNormalizedTensor,
    crop,
    hflip,
    resize,
    resized_hw,
    train_transforms,
)


def _random_target(rng, w, h, n):
    boxes = []
    for _ in range(n):
        x1, y1 = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
        boxes.append([x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)])
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.arange(n), "size": torch.tensor([h, w])}


def test_resized_hw_is_official_detr():
    assert resized_hw(1066, 800, 800, 1333) == (800, 1066)
    assert resized_hw(640, 480, 800, 1333) == (800, 1066)   # int() truncation of 1066.67
    assert resized_hw(3000, 500, 800, 1333) == (222, 1332)  # capped; int(222 * 6) truncates
    assert resized_hw(500, 1000, 600, None) == (1200, 600)


def test_flip_is_an_involution():
    rng = random.Random(0)
    for _ in range(20):
        w, h = rng.randint(5, 50), rng.randint(5, 50)
        image = Image.effect_noise((w, h), 50).convert("RGB")
        target = _random_target(rng, w, h, rng.randint(0, 4))
        img2, t2 = hflip(*hflip(image, target))
        assert (np.asarray(img2) == np.asarray(image)).all()
        torch.testing.assert_close(t2["boxes"], target["boxes"])


def test_boxes_stay_inside_the_image_through_training_augmentation():
    rng = random.Random(1)
    pipeline = train_transforms(scales=(64, 80, 96), max_size=160, crop_resize=(60, 80), crop_size=(30, 70))
    for _ in range(60):
        w, h = rng.randint(20, 200), rng.randint(20, 200)
        image = Image.new("RGB", (w, h))
        target = _random_target(rng, w, h, rng.randint(0, 6))
        out, t = pipeline(image, target, rng)
        H, W = out.shape[1:]
        assert t["size"].tolist() == [H, W]
        b = t["boxes"]
        assert len(b) == len(t["labels"])
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= W + 1e-3).all() and (b[:, 3] <= H + 1e-3).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


def test_crop_clips_and_drops_boxes():
    image = Image.new("RGB", (100, 100))
    target = {"boxes": torch.tensor([[10.0, 10, 30, 30], [60, 60, 90, 90], [0, 0, 5, 5]]),
              "labels": torch.tensor([0, 1, 2]), "size": torch.tensor([100, 100])}
    img, t = crop(image, target, top=20, left=20, h=50, w=50)
    assert img.size == (50, 50)
    torch.testing.assert_close(t["boxes"], torch.tensor([[0.0, 0, 10, 10], [40, 40, 50, 50]]))
    assert t["labels"].tolist() == [0, 1] and t["size"].tolist() == [50, 50]


def test_random_size_crop_on_small_image_and_resize_scales_boxes():
    rng = random.Random(0)
    image = Image.new("RGB", (20, 10))
    target = {"boxes": torch.tensor([[0.0, 0, 20, 10]]), "labels": torch.tensor([0]), "size": torch.tensor([10, 20])}
    img, t = RandomSizeCrop(384, 600)(image, target, rng)  # image smaller than min crop: whole image
    assert img.size == (20, 10)
    img, t = resize(img, t, 20, None)
    assert img.size == (40, 20)
    torch.testing.assert_close(t["boxes"], torch.tensor([[0.0, 0, 40, 20]]))


def test_normalize_uses_imagenet_statistics():
    x, _ = ToNormalizedTensor()(Image.new("RGB", (2, 1), (255, 0, 0)), {}, random.Random(0))
    assert x.shape == (3, 1, 2)
    assert x[0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)
    assert x[1, 0, 0].item() == pytest.approx((0 - 0.456) / 0.224)


# ---------------------------------------------------------------------- arrays (detr train's OpenCV path)


def test_resize_of_an_array_is_mmdets_resize_byte_for_byte():
    """detr train's resize (``data.image_backend`` "opencv") gives the pixels of mmdet 3.3's own
    ``Resize`` (golden: its uint8 output at a small scale, tests/data/detr/pipeline) for the same
    output size, through our decode (JPEG by OpenCV, PNG grey and RGBA by PIL, EXIF turned)."""
    from bertdetr.detr.data.coco import load_image_array
    from bertdetr.detr.data.pipelines import mmcv_rescale_size
    from bertdetr.detr.data.transforms import resize_image
    from tests.conftest import DATA

    golden = torch.load(DATA / "detr" / "pipeline" / "mmdet_inference.pt", weights_only=True)
    for name, e in golden["images"].items():
        rgb = load_image_array(str(DATA / "detr" / "pipeline" / name))
        (nw, nh), _ = mmcv_rescale_size(rgb.shape[1], rgb.shape[0], tuple(golden["small_scale"]))
        ours = torch.from_numpy(resize_image(rgb, nh, nw)).permute(2, 0, 1)
        assert torch.equal(ours, e["small_scale_chw_bgr_uint8"].flip(0)), name
        # PIL's bilinear (the "pil" backend, official DETR's) is another interpolation
        pil = np.asarray(resize_image(Image.fromarray(rgb), nh, nw))
        assert pil.shape == (nh, nw, 3) and not np.array_equal(pil, ours.permute(1, 2, 0).numpy()), name


def test_array_and_pil_augmentation_agree_but_for_the_interpolation():
    """The same draws give the same sizes, boxes and labels on an array as on a PIL image; flips
    and crops the same pixels; only the resizes' interpolation differs (OpenCV's, PIL's)."""
    rng = random.Random(3)
    pipeline = train_transforms(scales=(64, 80, 96), max_size=160, crop_resize=(60, 80), crop_size=(30, 70),
                                normalize=False)
    for k in range(30):
        w, h = rng.randint(20, 200), rng.randint(20, 200)
        array = np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)
        target = _random_target(rng, w, h, rng.randint(0, 6))
        a, ta = pipeline(array, target, random.Random(k))
        p, tp = pipeline(Image.fromarray(array), target, random.Random(k))
        assert a.dtype == p.dtype == torch.uint8 and a.shape == p.shape
        assert ta["size"].tolist() == tp["size"].tolist() == list(a.shape[1:])
        assert torch.equal(ta["boxes"], tp["boxes"]) and torch.equal(ta["labels"], tp["labels"])
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    target = _random_target(rng, 40, 30, 3)
    flipped, tf = hflip(image, target)
    assert np.array_equal(flipped, np.asarray(hflip(Image.fromarray(image), target)[0]))
    cropped, tc = crop(flipped, tf, top=5, left=7, h=20, w=25)
    assert np.array_equal(cropped, np.asarray(crop(Image.fromarray(flipped), tf, 5, 7, 20, 25)[0]))


def test_uint8_items_normalise_to_the_float_items_bit_for_bit():
    """``ToImageTensor`` then ``normalize_into`` (what detr train does, on the device) equals
    ``ToNormalizedTensor``, which equals the formula it always had, ``(x / 255 - mean) / std``."""
    from bertdetr.detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ToImageTensor, normalize_into

    array = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for image in (array, Image.fromarray(array)):
        pixels, _ = ToImageTensor()(image, {}, None)
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 37, 53)
        assert torch.equal(pixels, torch.from_numpy(array).permute(2, 0, 1))
        x, _ = ToNormalizedTensor()(image, {}, None)
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
        formula = (torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0) - mean) / std
        assert torch.equal(x, formula)
        assert torch.equal(normalize_into(torch.empty(3, 37, 53), pixels, mean, std), formula)

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bertdetr.detr.data.coco import (
    CocoDetection,
    ImageLoadError,
    check_images,
    collate,
    load_coco,
    load_image,
    to_rgb,
)
from bertdetr.detr.data.transforms import eval_transforms
from bertdetr.errors import BertDetrError


def _write_coco(tmp_path, images, annotations, categories=({"id": 3, "name": "cat"}, {"id": 7, "name": "dog"})):
    (tmp_path / "img").mkdir(exist_ok=True)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return path


def _image(tmp_path, name, w=40, h=30, mode="RGB", color=(200, 10, 10)):
    Image.new(mode, (w, h), color).save(tmp_path / "img" / name)


def _ann(i, image_id, bbox, cat=3, **kw):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, **kw}


def test_categories_mapped_to_contiguous_labels_and_cleaning_counted(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    anns = [
        _ann(1, 1, [1, 2, 10, 10], cat=7),
        _ann(2, 1, [30, 20, 20, 20]),             # partly outside: clipped to (30,20,40,30)
        _ann(3, 1, [5, 5, 0, 10]),                # zero width: dropped
        _ann(4, 1, [5, 5, -3, 10]),               # negative: dropped
        _ann(5, 1, [50, 50, 5, 5]),               # entirely outside: nothing left, dropped
        _ann(6, 1, [1, 1, 5, 5], iscrowd=1),      # crowd: dropped
    ]
    index = load_coco(_write_coco(tmp_path, images, anns), tmp_path / "img")
    assert index.category_ids == [3, 7] and index.class_names == ["cat", "dog"] and index.num_classes == 2
    im = index.images[0]
    np.testing.assert_array_equal(im["labels"], [1, 0])
    np.testing.assert_allclose(im["boxes"], [[1, 2, 11, 12], [30, 20, 40, 30]])
    assert index.stats == {"crowd_dropped": 1, "empty_dropped": 3, "non_finite_dropped": 0, "clipped": 1, "boxes": 2}
    assert "dropped 1 crowd and 3 zero-area" in index.summary()


def test_annotation_of_missing_image_is_clear_error(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    with pytest.raises(BertDetrError, match="annotation 9 refers to image id 5"):
        load_coco(_write_coco(tmp_path, images, [_ann(9, 5, [1, 1, 2, 2])]), tmp_path / "img")


def test_annotation_of_missing_category_is_clear_error(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    with pytest.raises(BertDetrError, match="annotation 9 has category id 4"):
        load_coco(_write_coco(tmp_path, images, [_ann(9, 1, [1, 1, 2, 2], cat=4)]), tmp_path / "img")


def test_image_ids_of_two_types_are_a_clear_error(tmp_path):
    """pycocotools sorts the image ids: an int and a str would fail it after a whole epoch."""
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
              {"id": "abc", "file_name": "b.png", "width": 40, "height": 30}]
    with pytest.raises(BertDetrError, match="mixes image ids of types int and str"):
        load_coco(_write_coco(tmp_path, images, [_ann(9, "abc", [1, 1, 2, 2])]), tmp_path / "img")
    images[0]["id"] = "one"  # strings throughout: as good as integers
    assert len(load_coco(_write_coco(tmp_path, images, [_ann(9, "abc", [1, 1, 2, 2])]), tmp_path / "img").images) == 2


def test_empty_dataset_is_clear_error(tmp_path):
    with pytest.raises(BertDetrError, match="no images"):
        load_coco(_write_coco(tmp_path, [], []), tmp_path / "img")


def test_missing_annotation_file_and_folder(tmp_path):
    with pytest.raises(BertDetrError, match="annotation file not found"):
        load_coco(tmp_path / "none.json", tmp_path)
    with pytest.raises(BertDetrError, match="image folder not found"):
        load_coco(_write_coco(tmp_path, [], []), tmp_path / "nope")


def test_missing_and_corrupt_images_skipped_and_counted_or_stop(tmp_path):
    images = [{"id": k, "file_name": f"{k}.png", "width": 40, "height": 30} for k in (1, 2, 3)]
    path = _write_coco(tmp_path, images, [])
    _image(tmp_path, "1.png")
    (tmp_path / "img" / "2.png").write_bytes(b"not an image at all")
    index = load_coco(path, tmp_path / "img")
    with pytest.warns(UserWarning, match="skipping image"):
        good, bad = check_images(index, skip_bad_images=True)
    assert bad == 2 and [im["id"] for im in good.images] == [1]
    with pytest.raises(ImageLoadError, match="not found|cannot read"):
        check_images(index, skip_bad_images=False)


def test_truncated_image_skipped_at_decode_or_raised(tmp_path):
    images = [{"id": 1, "file_name": "t.png", "width": 64, "height": 64}]
    path = _write_coco(tmp_path, images, [])
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "img" / "t.png")
    data = (tmp_path / "img" / "t.png").read_bytes()
    (tmp_path / "img" / "t.png").write_bytes(data[: len(data) // 2])
    index = load_coco(path, tmp_path / "img")
    ds = CocoDetection(index, eval_transforms(32, 64), skip_bad_images=True)
    with pytest.warns(UserWarning, match="skipping image 1") as caught:
        assert next(iter(torch.utils.data.DataLoader(ds, batch_size=None))) is None  # as the loaders fetch it
    # one line as the CLI writes our warnings ("bertdetr: warning: ..."), not the DataLoader's source line
    from bertdetr.cli import _format_warning

    w = caught[0]
    assert _format_warning(w.message, w.category, w.filename, w.lineno).startswith("bertdetr: warning: skipping image 1")
    assert collate([None]) is None
    with pytest.raises(ImageLoadError):
        CocoDetection(index, eval_transforms(32, 64), skip_bad_images=False)[0]


@pytest.mark.parametrize("mode,color", [("L", 128), ("RGBA", (10, 20, 30, 0)), ("CMYK", (0, 255, 255, 0)),
                                        ("P", 3), ("LA", (100, 255))])
def test_modes_become_rgb(tmp_path, mode, color):
    (tmp_path / "img").mkdir()
    ext = "jpg" if mode == "CMYK" else "png"
    _image(tmp_path, f"x.{ext}", mode=mode, color=color)
    img = load_image(str(tmp_path / "img" / f"x.{ext}"))
    assert img.mode == "RGB" and img.size == (40, 30)


def test_16bit_grayscale_scaled_not_clipped(tmp_path):
    array = np.full((30, 40), 32768, dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(array).save(path)
    img = load_image(str(path))
    assert img.mode == "RGB"
    assert abs(int(np.asarray(img)[0, 0, 0]) - 128) <= 1  # 32768 / 257, not clipped to 255
    assert to_rgb(Image.new("RGB", (2, 2))).mode == "RGB"


def test_exif_rotated_jpeg_follows_annotation(tmp_path):
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = stored.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "r.jpg"
    stored.save(path, exif=exif)
    assert load_image(str(path)).size == (20, 40)  # displayed orientation by default
    assert load_image(str(path), expected_wh=(20, 40)).size == (20, 40)
    assert load_image(str(path), expected_wh=(40, 20)).size == (40, 20)  # annotated unrotated


def test_dataset_item_and_collate_padding(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
              {"id": 2, "file_name": "b.png", "width": 20, "height": 50}]
    path = _write_coco(tmp_path, images, [_ann(1, 1, [0, 0, 20, 15]), _ann(2, 2, [2, 4, 10, 10], cat=7)])
    _image(tmp_path, "a.png")
    _image(tmp_path, "b.png", w=20, h=50)
    ds = CocoDetection(load_coco(path, tmp_path / "img"), eval_transforms(60, 100))
    img, target = ds[0]
    assert img.shape == (3, 60, 80)
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.0, 0.0, 40.0, 30.0]]))
    assert target["size"].tolist() == [60, 80] and target["orig_size"].tolist() == [30, 40]
    batch = collate([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 100, 80)  # b: 20x50 -> 40x100 (shorter side 60 capped by 100)
    assert batch["masks"][0, 60:].all() and not batch["masks"][0, :60].any()
    assert batch["masks"][1, :, 40:].all() and not batch["masks"][1, :, :40].any()
    assert (batch["images"][0, :, 60:] == 0).all()
    assert collate([ds[0]], size_divisor=32)["images"].shape == (1, 3, 64, 96)


def test_augmentation_depends_on_seed_epoch_index_only(tmp_path):
    from bertdetr.detr.data.transforms import train_transforms

    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    path = _write_coco(tmp_path, images, [_ann(1, 1, [0, 0, 20, 15])])
    _image(tmp_path, "a.png")
    ds = CocoDetection(load_coco(path, tmp_path / "img"), train_transforms(scales=(32, 48, 64), max_size=100,
                                                                            crop_resize=(40,), crop_size=(20, 30)))
    shapes = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        a, b = ds[0], ds[0]
        torch.testing.assert_close(a[0], b[0])
        shapes.add(tuple(a[0].shape))
    assert len(shapes) > 1


def test_non_finite_boxes_dropped_and_counted_and_no_box_left_is_an_error(tmp_path, capsys):
    """A box [NaN, 1, 2, 3] used to be "clipped" and fail epochs later: it is dropped at load and
    counted; a training set left with no box at all is refused, saying what was dropped and why."""
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    (tmp_path / "img").mkdir()
    _image(tmp_path, "a.png")
    anns = [_ann(1, 1, [float("nan"), 1, 2, 3]), _ann(2, 1, [1, 1, float("inf"), 3]), _ann(3, 1, [1, 1, 0, 3]),
            _ann(4, 1, [1, 1, 5, 5], iscrowd=1)]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 3, "name": "cat"}]}))
    index = load_coco(path, tmp_path / "img")
    assert index.stats["non_finite_dropped"] == 2 and index.stats["boxes"] == 0
    assert "2 with NaN or infinite coordinates" in index.summary()
    with pytest.raises(BertDetrError, match=r"no usable box to train on .*1 crowd and 1 zero-area boxes and 2 with NaN"):
        index.check_trainable(str(path))
    from bertdetr.cli import main

    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({"data": {"train_ann": str(path), "train_images": str(tmp_path / "img")},
                               "model": {"preset": "r18"}, "train": {"output_dir": str(tmp_path / "run")}}))
    assert main(["detr", "train", str(cfg)]) == 2
    assert "no usable box to train on" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_box_that_is_not_numbers_names_its_annotation(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    path = _write_coco(tmp_path, images, [_ann(9, 1, ["1", "x", 2, 3])])
    with pytest.raises(BertDetrError, match=r"annotation 9 of .*ann.json has bbox \['1', 'x', 2, 3\]: four numbers"):
        load_coco(path, tmp_path / "img")


# ------------------------------------------------------------- load_image_array (detr train's decode)


def _photo(w=61, h=47, seed=0):
    """Photo-like pixels (smooth gradients and noise), which JPEG keeps far from exact."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))


def _must_not_fall_back(monkeypatch):
    """load_image_array's PIL fallback, made to fail: what passes was decoded by OpenCV."""
    from bertdetr.detr.data import coco

    def fail(*args, **kwargs):
        raise AssertionError("decoded by PIL")

    monkeypatch.setattr(coco, "load_image", fail)


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey", "subsampling-444", "opencv-before-4.10"])
def test_jpegs_decoded_by_opencv_equal_pil(tmp_path, monkeypatch, kind):
    import cv2

    from bertdetr.detr.data.coco import load_image_array

    path = str(tmp_path / "p.jpg")
    image = _photo().convert("L") if kind == "grey" else _photo()
    image.save(path, quality=85, progressive=kind == "progressive", subsampling=0 if kind == "subsampling-444" else -1)
    expected = np.asarray(load_image(path))
    _must_not_fall_back(monkeypatch)
    if kind == "opencv-before-4.10":  # no IMREAD_COLOR_RGB: BGR, then turned to RGB
        monkeypatch.delattr(cv2, "IMREAD_COLOR_RGB", raising=False)
    array = load_image_array(path)
    assert array.dtype == np.uint8 and array.shape == (47, 61, 3) and array.flags.c_contiguous
    assert np.array_equal(array, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_follow_load_images_rule(tmp_path, monkeypatch, orientation):
    from bertdetr.detr.data.coco import load_image_array

    exif = Image.Exif()
    exif[0x0112] = orientation
    path = str(tmp_path / "r.jpg")
    _photo(40, 24).save(path, quality=90, exif=exif)
    shown = (24, 40) if orientation >= 5 else (40, 24)
    cases = [None, shown, (40, 24)]  # default; annotated as displayed; annotated on the stored pixels
    expected = [np.asarray(load_image(path, wh)) for wh in cases]
    _must_not_fall_back(monkeypatch)
    for wh, e in zip(cases, expected):
        array = load_image_array(path, wh)
        assert np.array_equal(array, e), (orientation, wh)
    assert load_image_array(path).shape[1::-1] == shown


def test_other_images_go_through_load_image(tmp_path):
    """PNG (16-bit, palette, alpha), CMYK JPEG, a JPEG with bytes after its end marker: PIL's pixels;
    a truncated JPEG (OpenCV would fill it with grey) is refused as load_image refuses it."""
    from bertdetr.detr.data.coco import load_image_array

    _photo().convert("CMYK").save(tmp_path / "cmyk.jpg")
    _photo().convert("P").save(tmp_path / "p.png")
    _photo().convert("RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(tmp_path / "g16.png")
    _photo().save(tmp_path / "tail.jpg")
    (tmp_path / "tail.jpg").write_bytes((tmp_path / "tail.jpg").read_bytes() + b"trailing data")
    for name in ("cmyk.jpg", "p.png", "a.png", "g16.png", "tail.jpg"):
        path = str(tmp_path / name)
        assert np.array_equal(load_image_array(path), np.asarray(load_image(path))), name
    data = (tmp_path / "tail.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for load in (load_image, load_image_array):
        with pytest.raises(ImageLoadError, match="cut.jpg"):
            load(str(tmp_path / "cut.jpg"))
    with pytest.raises(ImageLoadError, match="not found"):
        load_image_array(str(tmp_path / "missing.jpg"))
    with pytest.raises(ImageLoadError, match="more than the limit"):
        load_image_array(str(tmp_path / "tail.jpg"), max_pixels=100)


def test_opencv_items_pad_into_a_uint8_batch_that_normalises_to_the_float_one(tmp_path):
    """``decode="opencv"`` items through ``train_transforms(normalize=False)``: the augmentation of
    (seed, epoch, index) whether the epoch comes with the index or from ``set_epoch``; ``collate``
    pads them into a channels-last uint8 batch whose normalisation equals collating the items
    normalised one by one."""
    from bertdetr.detr.data.loader import BatchNormalizer
    from bertdetr.detr.data.transforms import ToNormalizedTensor, train_transforms

    images = [{"id": k, "file_name": f"{k}.jpg", "width": 40 + 9 * k, "height": 50 - 7 * k} for k in (1, 2, 3)]
    path = _write_coco(tmp_path, images, [_ann(k, k, [2, 3, 20, 15]) for k in (1, 2, 3)])
    for im in images:
        _photo(im["width"], im["height"], im["id"]).save(tmp_path / "img" / im["file_name"])
    transforms = train_transforms(scales=(32, 48, 64), max_size=100, crop_resize=(40,), crop_size=(20, 30),
                                  normalize=False)
    ds = CocoDetection(load_coco(path, tmp_path / "img"), transforms, seed=5, decode="opencv")
    ds.set_epoch(3)
    items = [ds[i] for i in range(3)]
    ds.set_epoch(0)
    for i, (img, target) in enumerate(items):
        again, t2 = ds[3, i]
        assert img.dtype == torch.uint8 and torch.equal(img, again) and torch.equal(target["boxes"], t2["boxes"])
    batch = collate(items)
    H, W = batch["images"].shape[2:]
    assert batch["images"].dtype == torch.uint8 and batch["images"].permute(0, 2, 3, 1).is_contiguous()
    floats = [(ToNormalizedTensor()(img.permute(1, 2, 0).numpy(), t, None)[0], t) for img, t in items]
    expected = collate(floats)
    assert torch.equal(BatchNormalizer(torch.device("cpu"))(batch)["images"], expected["images"])
    assert torch.equal(batch["masks"], expected["masks"])
    with pytest.raises(BertDetrError, match="decode must be one of"):
        CocoDetection(ds.index, transforms, decode="turbo")

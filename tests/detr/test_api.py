"""The Python API (``init_detector``, ``inference_detector``, ``draw``): equal to ``bertdetr detr
predict`` on the same files, for paths, BGR arrays and PIL images, from our folder and from an mmdet
config + checkpoint as mmdet's ``init_detector`` takes them."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bertdetr.cli import main
from bertdetr.detr import Detections, draw, inference_detector, init_detector
from bertdetr.detr.data.coco import ImageLoadError
from bertdetr.detr.evaluate import to_coco_results
from bertdetr.errors import BertDetrError
from tests.conftest import DATA

SIZE = ["--test-size", "96", "--max-size", "160"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, golden2):
    """A converted mmdet 2.x model (5 named classes, mmdet's pipeline) and the two real photos as
    PNG files."""
    tmp = tmp_path_factory.mktemp("api")
    folder = tmp / "detr-small"
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(DATA / "detr" / "mmdet2_detr_small.pt"),
                 "--config", str(DATA / "detr" / "mmdet2_detr_small.config.py"), "--output", str(folder)]) == 0
    paths = []
    for name, chw in zip(golden2["image_names"], golden2["images_bgr_uint8"]):
        bgr = chw.numpy().transpose(1, 2, 0)
        path = tmp / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])).save(path)
        paths.append(str(path))
    return folder, paths, tmp


def _coco(path, det: Detections, category_ids):
    import torch

    return to_coco_results(path.split("/")[-1], torch.from_numpy(det.boxes), torch.from_numpy(det.scores),
                           torch.from_numpy(det.labels), category_ids)


def test_inference_equals_predict_for_paths_arrays_and_pil_images(setup):
    folder, paths, tmp = setup
    assert main(["detr", "predict", "--checkpoint", str(folder), *paths, "--out", str(tmp / "pred"),
                 "--threshold", "0", *SIZE]) == 0
    expected = json.loads((tmp / "pred" / "results.json").read_text())
    detector = init_detector(folder, device="cpu", test_size=96, max_size=160)
    assert detector.pipeline == "mmdet" and len(detector.class_names) == 5
    results = inference_detector(detector, paths)
    assert isinstance(results, list) and len(results) == 2
    # mmdet 3's way of reading a result: pred_instances, tensors, indexed as its InstanceData
    pred = results[0].pred_instances
    assert torch.equal(pred.bboxes, torch.from_numpy(results[0].boxes)) and pred.labels.dtype == torch.int64
    kept = pred[pred.scores > 0.3]
    assert len(kept) == int((results[0].scores > 0.3).sum()) and len(pred[0]) == 1
    got = [r for path, det in zip(paths, results) for r in _coco(path, det, detector.category_ids)]
    assert _same(got, expected)
    # a BGR array (as cv2.imread gives it), with an alpha channel, and a PIL image of the same
    # pixels: the same detections
    for path, det in zip(paths, results):
        rgb = Image.open(path).convert("RGB")
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        bgra = np.concatenate([bgr, np.full(bgr.shape[:2] + (1,), 255, np.uint8)], 2)
        for image in (bgr, bgra, rgb):
            other = inference_detector(detector, image)
            np.testing.assert_allclose(other.boxes, det.boxes, atol=1e-4)
            np.testing.assert_allclose(other.scores, det.scores, atol=1e-6)
            assert other.names == det.names and (other.labels == det.labels).all()
    # grey: [H, W], [H, W, 1] and a PIL "L" image alike
    grey = np.asarray(Image.open(paths[0]).convert("L"))
    a, b, c = (inference_detector(detector, x) for x in (grey, grey[:, :, None], Image.fromarray(grey)))
    for other in (b, c):
        np.testing.assert_allclose(other.boxes, a.boxes, atol=1e-4)
        np.testing.assert_allclose(other.scores, a.scores, atol=1e-6)
    one = results[0]
    assert one.boxes.shape == (len(one.scores), 4) and list(one.scores) == sorted(one.scores, reverse=True)
    assert one.names == [detector.class_names[i] for i in one.labels]
    kept = one.above(float(np.median(one.scores)))
    assert 0 < len(kept.scores) < len(one.scores) and (kept.scores >= np.median(one.scores)).all()
    picture = draw(one, threshold=0.0, class_names=detector.class_names)
    assert isinstance(picture, Image.Image) and picture.size[0] >= one.image.size[0]


def _same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)
    return True


def test_an_mmdet_config_and_checkpoint_as_mmdets_init_detector(setup):
    folder, paths, _ = setup
    ours = init_detector(folder, device="cpu", test_size=96, max_size=160)
    theirs = init_detector(DATA / "detr" / "mmdet2_detr_small.config.py", DATA / "detr" / "mmdet2_detr_small.pt",
                           device="cpu", test_size=96, max_size=160)
    assert theirs.pipeline == "mmdet" and theirs.class_names == ours.class_names
    a, b = inference_detector(ours, paths[0]), inference_detector(theirs, paths[0])
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-5)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_bad_images_and_folders_are_named(setup, tmp_path):
    folder, _, _ = setup
    detector = init_detector(folder, device="cpu", test_size=96, max_size=160)
    with pytest.raises(ImageLoadError, match="image 1: an image array must be uint8"):
        inference_detector(detector, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ImageLoadError, match="^image 0 is 2000x1"):
        inference_detector(detector, [np.zeros((1, 2000, 3), np.uint8)])
    with pytest.raises(ImageLoadError, match="^image 0 is 0x0: empty"):
        inference_detector(detector, np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ImageLoadError, match="must be uint8 .* got bool \\[4, 4, 3\\]"):
        inference_detector(detector, np.ones((4, 4, 3), bool))
    with pytest.raises(ImageLoadError, match="not an image"):
        inference_detector(detector, 3)
    with pytest.raises(BertDetrError, match="not a checkpoint folder"):
        init_detector(tmp_path / "nothing")
    bert = tmp_path / "bert"  # a BERT model folder given to DETR: said as such
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertForPreTraining"], "model_type": "bert"}))
    with pytest.raises(BertDetrError, match="holds a BertForPreTraining model \\(bert\\), not a DETR checkpoint"):
        init_detector(bert)


def test_object_detection_pipeline_as_transformers(setup, tmp_path):
    """``pipeline("object-detection")`` against transformers' own on our export of the same model
    (``detr export --format hf``), on real photos: every query over the threshold in query order,
    the same labels, integer boxes, scores. Ours reads the images through official DETR's
    pipeline (PIL), transformers through its ``DetrImageProcessor``: their pixels differ by resize
    rounding, so scores agree to 1e-3 and boxes to a pixel."""
    import transformers

    from bertdetr.detr import pipeline

    folder, paths, _ = setup
    assert main(["detr", "export", "--checkpoint", str(folder), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    theirs = transformers.pipeline("object-detection", model=str(tmp_path / "hf"), device="cpu")
    ours = pipeline("object-detection", folder, device="cpu", pipeline="official", test_size=800, max_size=1333)
    # and photos stored turned (EXIF orientation 6: both read it as shown), grey, with alpha
    photos = [str(DATA / "detr" / "pipeline" / n) for n in ("chelsea_exif.jpg", "camera_grey.png", "coffee_rgba.png")]
    for threshold in (0.0, 0.15):
        got, expected = ours(paths + photos, threshold=threshold), theirs(paths + photos, threshold=threshold)
        assert len(got) == 5 and any(got)
        for a_image, b_image in zip(got, expected):
            assert len(a_image) == len(b_image)
            for a, b in zip(a_image, b_image):
                assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-3)
                assert all(abs(a["box"][k] - b["box"][k]) <= 1 for k in ("xmin", "ymin", "xmax", "ymax"))
                assert all(isinstance(v, int) for v in a["box"].values())
    # a PIL image stored turned is turned too (transformers' load_image), a BGR array is not
    turned = Image.open(photos[0])
    assert ours(turned, threshold=0.0) == ours(photos[0], threshold=0.0)
    array = np.ascontiguousarray(np.asarray(turned.convert("RGB"))[:, :, ::-1])
    assert ours(array, threshold=0.0) != ours(photos[0], threshold=0.0)
    one = ours(paths[0], threshold=0.0)  # one image: its list; in query order, not sorted
    assert one == ours([paths[0]], threshold=0.0)[0] and len(one) == 10
    assert [d["score"] for d in one] != sorted((d["score"] for d in one), reverse=True)
    assert ours(paths[0]) == [d for d in one if d["score"] > 0.5]  # transformers' default threshold
    with pytest.raises(BertDetrError, match="threshold must be a number in \\[0, 1\\], got 2"):
        ours(paths[0], threshold=2)
    with pytest.raises(BertDetrError, match="unknown task 'image-classification'"):
        pipeline("image-classification", folder)
    with pytest.raises(BertDetrError, match="object-detection takes checkpoint, .* not top_k"):
        pipeline("object-detection", folder, top_k=5)
    for bad in (None, 3, [paths[0], None]):
        with pytest.raises(ImageLoadError, match="not an image"):
            ours(bad)


def test_object_detection_pipeline_batches_images_of_one_size(setup, tmp_path):
    """``batch_size``: images of one size after resizing run together (the two photos repeated,
    interleaved: batches wait for their size), the same detections as one at a time and as
    transformers' pipeline batching the same images (it stacks a batch as it is: one size only)."""
    import transformers

    from bertdetr.detr import pipeline

    folder, paths, _ = setup
    images = [paths[0], paths[1], paths[0], paths[0], paths[1]]
    ours = pipeline("object-detection", folder, device="cpu", pipeline="official", test_size=96, max_size=160,
                    threshold=0.0, batch_size=2)
    one = [ours(p, batch_size=1) for p in images]
    for got in (ours(images), ours(images, batch_size=3)):
        assert len(got) == len(one)
        for a_image, b_image in zip(got, one):
            assert [a["label"] for a in a_image] == [b["label"] for b in b_image]
            assert all(a["score"] == pytest.approx(b["score"], abs=1e-5) for a, b in zip(a_image, b_image))
            assert all(abs(a["box"][k] - b["box"][k]) <= 1 for a, b in zip(a_image, b_image) for k in a["box"])
    assert main(["detr", "export", "--checkpoint", str(folder), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    theirs = transformers.pipeline("object-detection", model=str(tmp_path / "hf"), device="cpu", batch_size=2,
                                   image_processor=transformers.DetrImageProcessor.from_pretrained(
                                       str(tmp_path / "hf"), size={"shortest_edge": 96, "longest_edge": 160}))
    same_size = [paths[0]] * 3
    for a_image, b_image in zip(ours(same_size, batch_size=2), theirs(same_size, threshold=0.0)):
        assert [a["label"] for a in a_image] == [b["label"] for b in b_image]
        assert all(a["score"] == pytest.approx(b["score"], abs=1e-3) for a, b in zip(a_image, b_image))
    with pytest.raises(BertDetrError, match="object-detection takes threshold, batch_size and num_workers, not top_k"):
        ours(paths[0], top_k=3)
    # num_workers (to pipeline(...) or the call, as transformers'): decoded ahead, the same results;
    # a bad image among them is raised by name as without workers
    with_workers = pipeline("object-detection", folder, device="cpu", pipeline="official", test_size=96,
                            max_size=160, threshold=0.0, batch_size=2, num_workers=2)
    assert with_workers(images) == ours(images) == ours(images, num_workers=1)
    with pytest.raises(ImageLoadError, match="not an image"):
        with_workers([paths[0], None])
    with pytest.raises(BertDetrError, match="num_workers must be a whole number >= 0"):
        ours(images, num_workers=-1)
    for bad in (0, 1.5, True):
        with pytest.raises(BertDetrError, match="batch_size must be a whole number >= 1"):
            ours(images, batch_size=bad)
        with pytest.raises(BertDetrError, match="batch_size must be a whole number >= 1"):
            pipeline("object-detection", folder, device="cpu", batch_size=bad)


@pytest.mark.parametrize("name, value", [("test_size", "800"), ("test_size", -5), ("test_size", 0),
                                         ("test_size", 96.0), ("max_size", True), ("max_size", 0),
                                         ("max_pixels", 0), ("max_pixels", -1), ("max_pixels", "1e6")])
def test_bad_test_scale_and_max_pixels_are_named_when_built(setup, name, value):
    """``test_size``, ``max_size``, ``max_pixels`` are ints >= 1 (or None), checked when the
    detector or pipeline is built: "800" failed at the first image with a TypeError from inside
    the resize, -5 blamed the image, 0 was read as the checkpoint's own size, and
    ``max_pixels=0`` refused every image naming the command's ``--max-pixels``."""
    from bertdetr.detr import pipeline

    folder, _, _ = setup
    import re

    message = "^" + re.escape(f"{name} must be a whole number >= 1, got {value!r}") + "$"
    with pytest.raises(BertDetrError, match=message):
        init_detector(folder, device="cpu", **{name: value})
    with pytest.raises(BertDetrError, match=message):
        pipeline("object-detection", folder, device="cpu", **{name: value})


def test_test_scale_none_keeps_the_checkpoints_and_ints_are_used(setup):
    folder, paths, _ = setup
    default = init_detector(folder, device="cpu", test_size=None, max_size=None, max_pixels=None)
    assert (default.test_size, default.max_size, default.max_pixels) == (800, 1333, None)  # mmdet 2's test scale
    small = init_detector(folder, device="cpu", test_size=96, max_size=160, max_pixels=10**6)
    assert (small.test_size, small.max_size, small.max_pixels) == (96, 160, 10**6)
    assert len(inference_detector(small, paths[0]).scores) > 0
    import dataclasses

    with pytest.raises(BertDetrError, match="test_size must be a whole number >= 1, got '96'"):
        dataclasses.replace(small, test_size="96")  # a Detector made by hand is checked too


def test_a_folder_given_as_an_image_is_said_to_be_a_folder(setup, tmp_path):
    from bertdetr.detr import pipeline

    folder, paths, _ = setup
    detector = init_detector(folder, device="cpu", test_size=96, max_size=160)
    for call in (lambda x: inference_detector(detector, x),
                 pipeline("object-detection", folder, device="cpu", test_size=96, max_size=160)):
        for images in (str(tmp_path), tmp_path, [paths[0], str(tmp_path)]):
            with pytest.raises(ImageLoadError, match=f"^{tmp_path} is a folder, not an image file: give its image "
                               "files as a list of paths \\(DetInferencer"):
                call(images)

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from bertdetr.detr.data.coco import load_coco
from bertdetr.detr.evaluate import COCO_METRICS, coco_evaluation, to_coco_results, write_results
from bertdetr.detr.data.shapes import ShapesConfig, make_shapes
from bertdetr.detr.visualize import class_color, draw_detections, overlay_heatmap
from bertdetr.errors import BertDetrError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    path = make_shapes(root, "val", ShapesConfig(num_images=5, min_size=48, max_size=64, seed=1))
    return path, load_coco(path, root / "images")


def _results(index, jitter=0.0):
    out = []
    for im in index.images:
        boxes = torch.from_numpy(im["boxes"]) + jitter
        out += to_coco_results(im["id"], boxes, torch.full((len(boxes),), 0.9), torch.from_numpy(im["labels"]),
                               index.category_ids)
    return out


def test_perfect_detections_score_ap_1(shapes, tmp_path):
    path, index = shapes
    results = _results(index)
    assert results[0]["category_id"] in index.category_ids
    write_results(results, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == results
    metrics = coco_evaluation(path, results).metrics
    assert set(metrics) == set(COCO_METRICS)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)


def test_shifted_detections_score_lower_and_no_detections_zero(shapes):
    path, index = shapes
    assert coco_evaluation(path, _results(index, jitter=4.0)).metrics["AP"] < 0.9
    assert coco_evaluation(path, []).metrics["AP"] == 0.0


def test_faster_coco_eval_gives_pycocotools_numbers(shapes):
    pytest.importorskip("faster_coco_eval")
    path, index = shapes
    g = torch.Generator().manual_seed(0)
    results = []
    for im in index.images:  # noisy boxes, wrong labels and random scores: every metric in play
        boxes = torch.from_numpy(im["boxes"]).float()
        boxes = torch.cat([boxes + torch.randn(boxes.shape, generator=g) * 3, boxes + torch.randn(boxes.shape, generator=g) * 8])
        labels = torch.cat([torch.from_numpy(im["labels"]), torch.randint(0, len(index.category_ids), (len(im["labels"]),), generator=g)])
        results += to_coco_results(im["id"], boxes, torch.rand(len(boxes), generator=g), labels, index.category_ids)
    ref = coco_evaluation(path, results).metrics
    fast = coco_evaluation(path, results, backend="faster-coco-eval").metrics
    assert 0.05 < ref["AP"] < 0.95
    for k in COCO_METRICS:
        assert fast[k] == pytest.approx(ref[k], abs=1e-6), k


def test_unknown_or_missing_coco_backend_is_a_clear_error(shapes, monkeypatch):
    import sys

    from bertdetr.errors import BertDetrError

    path, index = shapes
    with pytest.raises(BertDetrError, match="unknown COCO evaluation back-end"):
        coco_evaluation(path, _results(index), backend="detectron").metrics
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # as if not installed
    with pytest.raises(BertDetrError, match="pip install 'bertdetr\\[fast-eval\\]'"):
        coco_evaluation(path, _results(index), backend="faster-coco-eval").metrics


def test_draw_detections_marks_box_in_class_color():
    image = Image.new("RGB", (60, 40), (0, 0, 0))
    out = draw_detections(image, np.array([[10, 20, 50, 35]]), np.array([0.8]), np.array([2]), ["a", "b", "c"],
                          min_side=0)
    assert out.size == image.size and out.getpixel((30, 35)) == class_color(2)  # bottom edge
    assert image.getpixel((30, 35)) == (0, 0, 0)      # the input is untouched
    low = draw_detections(image, np.array([[10, 20, 50, 35]]), np.array([0.1]), np.array([2]), ["a", "b", "c"], 0.5)
    assert (np.asarray(low) == 0).all()
    # small images are drawn enlarged (whole factor), boxes scaled with them
    big = draw_detections(image, np.array([[10, 20, 50, 35]]), np.array([0.8]), np.array([2]), ["a", "b", "c"])
    assert big.size == (600, 400) and big.getpixel((300, 349)) == class_color(2)
    # as far as the longer side stays within max_side: a strip is not made 30000 pixels long
    no_box = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), ["a"])
    assert draw_detections(Image.new("RGB", (3000, 40)), *no_box).size == (3000, 40)
    assert draw_detections(Image.new("RGB", (30, 2000)), *no_box).size == (60, 4000)


def test_overlay_heatmap_hot_where_attention_is():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    heat = np.zeros((2, 4))
    heat[0, 0] = 1.0
    out = np.asarray(overlay_heatmap(image, heat))
    assert out.shape == (20, 40, 3)
    assert out[2, 2, 0] > 100 and out[18, 38, 0] == 0


def test_label_category_ids_by_id_by_name_or_a_clear_error():
    from bertdetr.detr.data.coco import CocoIndex
    from bertdetr.detr.evaluate import label_category_ids
    from bertdetr.errors import BertDetrError

    data = CocoIndex("", [], [3, 7, 9], ["cat", "dog", "cow"])
    # ids cover the dataset's (more classes than it has: COCOeval passes over the rest)
    assert label_category_ids([3, 5, 7, 9], ["cat", "owl", "dog", "cow"], data) == ([3, 5, 7, 9], "by category id")
    # mmdet's way: looked up by name (ids 1..C of a converted mmdet model)
    ids, how = label_category_ids([1, 2, 3, 4], ["dog", "cow", "owl", "cat"], data)
    assert how == "by class name" and ids[:2] == [7, 9] and ids[3] == 3 and ids[2] not in (3, 7, 9)
    # no names known: ids must do
    assert label_category_ids([3, 7, 9], ["class 0", "class 1", "class 2"], data, names_known=False)[0] == [3, 7, 9]
    with pytest.raises(BertDetrError, match=r"category 3 is 'lion' for the checkpoint but 'cat' in the dataset"):
        label_category_ids([3, 7, 9], ["lion", "dog", "cow"], data)
    with pytest.raises(BertDetrError, match=r"1 of the dataset's categories are not among the checkpoint's: 9 'cow'"):
        label_category_ids([1, 3, 7], ["x", "y", "z"], data)
    # two of the dataset's categories of one name: by name one would never be matched
    twice = CocoIndex("", [], [3, 7, 9], ["red", "red", "blue"])
    with pytest.raises(BertDetrError, match=r"the dataset names more than one category 'red'"):
        label_category_ids([1, 2, 3], ["red", "green", "blue"], twice)


@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval"])
def test_per_class_ap_and_summary_table(shapes, backend):
    if backend == "faster-coco-eval":
        pytest.importorskip("faster_coco_eval")
    from bertdetr.detr.evaluate import coco_evaluation

    path, index = shapes
    perfect, missed = index.category_ids[0], index.category_ids[1]
    shifted = index.category_ids[2]
    results = []
    for r in _results(index):
        if r["category_id"] == missed:
            continue  # never detected: AP 0
        if r["category_id"] == shifted:
            r = dict(r, bbox=[r["bbox"][0] + 3, r["bbox"][1] + 3, r["bbox"][2], r["bbox"][3]])
        results.append(r)
    ev = coco_evaluation(path, results, backend=backend)
    assert sorted(ev.per_class_ap) == sorted(index.category_ids)
    assert ev.per_class_ap[perfect] == pytest.approx(1.0) and ev.per_class_ap[missed] == 0.0
    assert 0.0 < ev.per_class_ap[shifted] < 1.0
    # COCO's AP is the mean of the per-class APs over the classes with ground truth
    present = [v for v in ev.per_class_ap.values() if v == v]
    assert ev.metrics["AP"] == pytest.approx(sum(present) / len(present), abs=1e-6)
    assert len(ev.table) == 12 and ev.table[0].lstrip().startswith("Average Precision  (AP) @[ IoU=0.50:0.95")
    assert f"{ev.metrics['AP']:.3f}" in ev.table[0]


def test_precision_recall_counts_each_object_once(shapes):
    from bertdetr.detr.evaluate import precision_recall

    path, index = shapes
    exact = _results(index)
    n = len(exact)
    pr = precision_recall(path, exact, threshold=0.5)
    assert (pr.precision, pr.recall, pr.detections, pr.objects, pr.matched) == (1.0, 1.0, n, n, n)
    # a second box on the first object (a duplicate) is wrong; by file name, as detr predict writes them
    names = {im["id"]: im["file_name"] for im in index.images}
    dup = [{**r, "image_id": names[r["image_id"]]} for r in exact] + [{**exact[0], "score": 0.8}]
    pr = precision_recall(path, dup, threshold=0.5)
    assert pr.matched == n and pr.detections == n + 1 and pr.precision == n / (n + 1) and pr.recall == 1.0
    # below the threshold: not counted; the wrong class or a box off by more than IoU 0.5: not matched
    low = [{**r, "score": 0.3} for r in exact]
    assert precision_recall(path, low, threshold=0.5).detections == 0
    assert precision_recall(path, low, threshold=0.5).recall == 0.0
    other = [{**r, "category_id": r["category_id"] % 4 + 1} for r in exact]
    assert precision_recall(path, other).matched == 0
    x, y, w, h = exact[0]["bbox"]
    shifted = [{**exact[0], "bbox": [x + w * 0.6, y, w, h]}]
    assert precision_recall(path, shifted).matched == 0
    assert precision_recall(path, shifted, iou=0.2).matched == 1
    # only the objects of the images predicted (detr predict on some of the file's images)
    first = index.images[0]
    mine = [r for r in exact if r["image_id"] == first["id"]]
    pr = precision_recall(path, mine, images=[os.path.basename(first["file_name"])])
    assert (pr.objects, pr.matched, pr.recall) == (len(first["boxes"]), len(mine), 1.0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("annotations"), "has no annotations: precision and recall need"),
    (lambda d: d.pop("images"), "has no 'images' field"),
    (lambda d: d["annotations"][0].pop("bbox"), "has no 'bbox' field"),
    (lambda d: d.update(images=["a.jpg"]), "an image entry is str 'a.jpg', not a JSON object"),
])
def test_precision_recall_names_what_a_broken_file_lacks(shapes, tmp_path, change, message):
    from bertdetr.detr.evaluate import precision_recall

    path, _ = shapes
    coco = json.loads(open(path).read())
    change(coco)
    (tmp_path / "a.json").write_text(json.dumps(coco))
    with pytest.raises(BertDetrError, match=re.escape(message)):
        precision_recall(tmp_path / "a.json", [])
    (tmp_path / "b.json").write_text("[1, 2")
    with pytest.raises(BertDetrError, match="is not valid JSON"):
        precision_recall(tmp_path / "b.json", [])


@pytest.mark.parametrize("pipeline", ["bertdetr", "mmdet"])
def test_predict_dataset_the_same_with_decoding_workers(shapes, pipeline):
    """``num_workers`` (``detr eval --num-workers``, validation during ``detr train``): the same results."""
    from bertdetr.detr.evaluate import predict_dataset
    from bertdetr.detr.model import build_detr
    from tests.detr.conftest import tiny_detr_config

    torch.manual_seed(0)
    model = build_detr(tiny_detr_config(num_queries=4, num_classes=4)).eval()
    _, index = shapes
    runs = [predict_dataset(model, index, 64, 96, 10, torch.device("cpu"), 2, pipeline=pipeline, num_workers=w)
            for w in (0, 2)]
    assert len(runs[0]) == 5 * 4 and runs[0] == runs[1]   # (softmax: the best class of each of 4 queries)
    half = predict_dataset(model, index, 64, 96, 10, torch.device("cpu"), 2, pipeline=pipeline, dtype=torch.bfloat16)
    assert [r["image_id"] for r in half] == [r["image_id"] for r in runs[0]]   # bf16 autocast: close, not equal
    assert max(abs(a["score"] - b["score"]) for a, b in zip(sorted(half, key=lambda r: (r["image_id"], r["score"])),
                                                            sorted(runs[0], key=lambda r: (r["image_id"], r["score"])))) < 2e-2


class _OneBox(torch.nn.Module):
    """A stand-in DETR: one detection of label 0 (score ~1) on the middle half of each image
    (normalised cx, cy, w, h = 0.5), whatever the pixels: where its box lands in the results says
    which frame they are in."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # (a device to be found on)

    def forward(self, images, masks=None):
        B = images.shape[0]
        return {"pred_logits": torch.tensor([10.0, -10.0]).expand(B, 1, 2),
                "pred_boxes": torch.tensor([0.5, 0.5, 0.5, 0.5]).expand(B, 1, 4)}


def _middle_half_dataset(root, files, drop=()):
    """A COCO json of images ``files`` {name: (json width, json height, file width, file height,
    EXIF orientation)}, each with one object on the middle half of the image as the json sizes
    it (fields in ``drop`` left out of the annotations); the files written at their own size."""
    from PIL import Image as PILImage

    (root / "images").mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for k, (name, (jw, jh, fw, fh, turn)) in enumerate(files.items(), 1):
        pixels = PILImage.fromarray(rng.integers(0, 255, (fh, fw, 3), dtype=np.uint8))
        if turn != 1:
            exif = PILImage.Exif()
            exif[0x0112] = turn
            pixels.save(root / "images" / name, exif=exif)
        else:
            pixels.save(root / "images" / name)
        images.append({"id": k, "file_name": name, "width": jw, "height": jh})
        ann = {"id": k, "image_id": k, "category_id": 1, "iscrowd": 0, "area": jw * jh / 4.0,
               "bbox": [jw / 4, jh / 4, jw / 2, jh / 2]}
        anns.append({key: v for key, v in ann.items() if key not in drop})
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    return path


@pytest.mark.parametrize("pipeline", ["bertdetr", "mmdet", "official"])
def test_files_of_another_size_than_the_json_are_evaluated_in_its_pixels(tmp_path, pipeline):
    """Photos resized after annotation (or a json written for thumbnails): the detections come out
    in the files' pixels and go into results.json in the json's, where COCO's ground truth is,
    with one warning line; AP 1, not 0, for detections on the objects."""
    import warnings

    from bertdetr.detr.evaluate import evaluate_detr

    files = {"big0.png": (64, 48, 128, 96, 1), "big1.png": (64, 48, 160, 120, 1), "same.png": (64, 48, 64, 48, 1)}
    ann = _middle_half_dataset(tmp_path, files)
    index = load_coco(ann, tmp_path / "images")
    with pytest.warns(UserWarning) as caught:
        ev = evaluate_detr(_OneBox(), index, str(ann), 48, 64, 1, torch.device("cpu"), 2,
                           results_path=str(tmp_path / "results.json"), pipeline=pipeline)
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1 and lines[0].startswith("2 of 3 images' files differ in size from the annotation json's "
                                                   "width and height (e.g. big0.png: 128x96 on disk, 64x48 in the json)")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["bbox"] for r in results] == [[16.0, 12.0, 32.0, 24.0]] * 3
    assert ev.metrics["AP"] == pytest.approx(1.0)
    # files the size of the json: not a word
    same = _middle_half_dataset(tmp_path / "same", {"a.png": (64, 48, 64, 48, 1)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evaluate_detr(_OneBox(), load_coco(same, tmp_path / "same" / "images"), str(same), 48, 64, 1,
                           torch.device("cpu"), pipeline=pipeline)
    assert ev.metrics["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("pipeline", ["bertdetr", "mmdet", "official"])
def test_exif_turned_photos_under_the_official_pipeline_are_named_not_rescaled(tmp_path, pipeline):
    """A photo stored 64x48 with EXIF orientation 6 (shown 48x64, and annotated so): official DETR's
    pipeline does not apply the orientation (kept on purpose), so it sees another frame than the
    json's; a warning says so and which pipelines apply it, and its boxes are not "fixed" by the
    rescaling of resized files (a turn is not a resize). mmdet's and ours apply it: AP 1, no word.
    A file with its sides swapped and no EXIF to explain it: unscaled, with its own warning."""
    from bertdetr.detr.evaluate import predict_dataset

    ann = _middle_half_dataset(tmp_path, {"turned.jpg": (48, 64, 64, 48, 6), "swapped.png": (48, 64, 64, 48, 1)})
    index = load_coco(ann, tmp_path / "images")
    with pytest.warns(UserWarning) as caught:
        results = predict_dataset(_OneBox(), index, 48, 64, 1, torch.device("cpu"), pipeline=pipeline)
    lines = [str(w.message) for w in caught]
    turned, swapped = results
    assert swapped["bbox"] == [16.0, 12.0, 32.0, 24.0]   # its own 64x48 pixels, unscaled
    swap_line = ("1 of 2 images are decoded with the annotation json's width and height swapped (swapped.png: "
                 "64x48 decoded, 48x64 in the json): their detections are left unscaled (a turn is not a resize)")
    if pipeline == "official":
        assert turned["bbox"] == [16.0, 12.0, 32.0, 24.0]   # as stored: not scaled by 48/64, 64/48
        assert len(lines) == 2 and lines[1].startswith(swap_line)
        assert lines[0].startswith("1 of 2 images are stored turned, with an EXIF orientation that the official "
                                   "pipeline does not apply, as official DETR does not (turned.jpg: orientation 6, "
                                   "64x48 as stored, 48x64 in the json)")
        assert lines[0].endswith("--pipeline mmdet or bertdetr applies the orientation") and "\n" not in lines[0]
    else:
        assert turned["bbox"] == [12.0, 16.0, 24.0, 32.0]   # turned as shown: the json's frame
        assert len(lines) == 1 and lines[0].startswith(swap_line)


@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval"])
@pytest.mark.parametrize("strip", ["iscrowd", "area", "id", "all", "ids 0 and twice"])
def test_annotations_without_iscrowd_area_or_ids_evaluate_as_with_them(shapes, tmp_path, backend, strip):
    """Our loader reads annotations without ``iscrowd`` (0), ``area`` or ``id``; COCO's API needs
    them (a KeyError inside pycocotools, in ``detr train`` only at the first validation): they are
    filled in as the API fills results (area w x h, ids 1..N), and the AP is the full file's."""
    if backend == "faster-coco-eval":
        pytest.importorskip("faster_coco_eval")
    path, index = shapes
    coco = json.loads(open(path).read())
    for a in coco["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]  # (what the defaults will be: the same AP by construction)
    (tmp_path / "full.json").write_text(json.dumps(coco))
    for k, a in enumerate(coco["annotations"]):
        if strip == "ids 0 and twice":
            a["id"] = 0 if k < 2 else 7
        else:
            for key in (("iscrowd", "area", "id") if strip == "all" else (strip,)):
                a.pop(key)
    (tmp_path / "stripped.json").write_text(json.dumps(coco))
    g = torch.Generator().manual_seed(0)
    results = []
    for im in index.images:  # noisy boxes and random scores: an AP strictly between 0 and 1
        boxes = torch.from_numpy(im["boxes"]).float() + torch.randn(im["boxes"].shape, generator=g) * 3
        results += to_coco_results(im["id"], boxes, torch.rand(len(boxes), generator=g),
                                   torch.from_numpy(im["labels"]), index.category_ids)
    full = coco_evaluation(tmp_path / "full.json", [dict(r) for r in results], backend=backend)
    stripped = coco_evaluation(tmp_path / "stripped.json", [dict(r) for r in results], backend=backend)
    assert 0.05 < full.metrics["AP"] < 0.95
    assert stripped.metrics == full.metrics and stripped.table == full.table
    assert coco_evaluation(tmp_path / "stripped.json", [], backend=backend).metrics["AP"] == 0.0


def test_eval_results_do_not_depend_on_the_batch_size(shapes):
    """Images of one size after resizing run together, nothing padded (as ``detr predict``): AP does
    not move with ``--batch-size`` (padding changes a DETR's detections) and the results equal one
    image at a time, in the dataset's order."""
    import dataclasses

    from bertdetr.detr.evaluate import predict_dataset
    from bertdetr.detr.model import build_detr
    from tests.detr.conftest import tiny_detr_config

    torch.manual_seed(0)
    model = build_detr(tiny_detr_config(num_queries=4, num_classes=4)).eval()
    _, index = shapes
    # every image twice (the copy under another id): sizes that batch together, among sizes that do not
    twice = dataclasses.replace(index, images=[dict(im, id=im["id"] + k * 1000) for im in index.images
                                               for k in (0, 1)])
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    one = predict_dataset(model, twice, 64, 96, 10, torch.device("cpu"), 1)
    assert calls == [1] * 10
    calls.clear()
    four = predict_dataset(model, twice, 64, 96, 10, torch.device("cpu"), 4)
    assert sum(calls) == 10 and max(calls) > 1   # some batched
    assert [r["image_id"] for r in one] == [r["image_id"] for r in four]
    assert [r["image_id"] for r in one][::4] == [im["id"] for im in twice.images]
    for a, b in zip(one, four):
        assert a["category_id"] == b["category_id"] and abs(a["score"] - b["score"]) <= 1e-4
        assert np.allclose(a["bbox"], b["bbox"], atol=1e-2)

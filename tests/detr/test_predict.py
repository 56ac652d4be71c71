"""``detr predict``: batches of one size, decoding workers, pictures on threads, names that never collide."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from bertdetr.cli import main
from bertdetr.detr.data.coco import ImageLoadError
from bertdetr.errors import BertDetrError
from bertdetr.detr.predict import (batches_of_one_size, detect_batch, detect_prepared, image_ids, picture_names,
                                   predict_images)
from tests.conftest import DATA

PHOTOS = DATA / "detr" / "pipeline"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from bertdetr.detr.model import build_detr
    from bertdetr.detr.weights import save_detr
    from tests.detr.conftest import tiny_detr_config

    torch.manual_seed(0)
    cfg = tiny_detr_config(num_queries=6, num_classes=3)
    root = tmp_path_factory.mktemp("predict")
    save_detr(build_detr(cfg).eval(), cfg, root / "ckpt")
    return root / "ckpt"


@pytest.fixture
def photos(tmp_path):
    """Nine images: three sizes interleaved (so batches must wait for their size), a grey PNG and
    an RGBA PNG among them, and a file that is not an image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"a{k}.png")
    for k in range(2):
        shutil.copy(PHOTOS / "astronaut.jpg", folder / f"b{k}.jpg")
    shutil.copy(PHOTOS / "astronaut_tall.jpg", folder / "c0.jpg")
    shutil.copy(PHOTOS / "camera_grey.png", folder / "d0.png")
    shutil.copy(PHOTOS / "coffee_rgba.png", folder / "e0.png")
    (folder / "f0.jpg").write_bytes(b"not a jpeg")
    return folder


def _item(k, h, w):
    return k, type("P", (), {"tensor": torch.zeros(3, h, w)})()


def test_batches_of_one_size_keep_each_item_once_and_sizes_apart():
    sizes = [(4, 6), (6, 4), (4, 6), (4, 6), (6, 4), (5, 5), (4, 6), (6, 4)]
    items = [_item(k, *s) for k, s in enumerate(sizes)]
    items.insert(3, (99, ImageLoadError("broken")))
    batches = list(batches_of_one_size(items, 3))
    assert sorted(k for b in batches for k, _ in b) == list(range(len(sizes))) + [99]
    for b in batches:
        assert 1 <= len(b) <= 3
        assert len({tuple(p.tensor.shape) for _, p in b if not isinstance(p, ImageLoadError)}) <= 1
    assert [k for k, _ in batches[0]] == [99]          # an error comes through at once, alone
    assert [k for k, _ in batches[1]] == [0, 2, 3]     # the first full batch of one size
    assert [[k for k, _ in b] for b in batches[2:]] == [[1, 4, 7], [5], [6]]   # the rest at the end
    assert [len(b) for b in batches_of_one_size(items, 1)] == [1] * len(items)


def test_batches_of_one_size_bound_what_waits():
    # every image a size of its own: no batch fills; once 4 wait, one goes for each that comes
    items = [_item(k, 4, 4 + k) for k in range(10)]
    taken = []

    def source():
        for item in items:
            taken.append(item[0])
            yield item

    batches = []
    for batch in batches_of_one_size(source(), 8, max_waiting=4):
        batches.append(batch)
        assert len(taken) - sum(len(b) for b in batches) <= 4
    assert sorted(k for b in batches for k, _ in b) == list(range(10))
    assert all(len(b) == 1 for b in batches)


def test_detect_batch_equals_one_at_a_time(ckpt):
    from bertdetr.detr.weights import load_checkpoint_dir

    model = load_checkpoint_dir(ckpt, "cpu").model
    torch.manual_seed(1)
    tensors = [torch.randn(3, 40, 56) for _ in range(3)]
    scales = [(0.5, 0.5), (1.0, 1.0), (0.25, 0.3)]
    batched = detect_batch(model, tensors, scales)
    for t, s, b in zip(tensors, scales, batched):
        one = detect_prepared(model, t, s)
        assert torch.equal(one["labels"], b["labels"])
        torch.testing.assert_close(one["scores"], b["scores"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(one["boxes"], b["boxes"], atol=1e-3, rtol=1e-5)
    with pytest.raises(ValueError, match="one size"):
        detect_batch(model, [tensors[0], torch.randn(3, 40, 40)], scales[:2])


def _results(folder):
    return json.loads((folder / "results.json").read_text())


def test_batches_and_workers_give_the_same_results_and_pictures(ckpt, photos, tmp_path, capsys):
    one, many = tmp_path / "one", tmp_path / "many"
    for out, opts in ((one, []), (many, ["--batch-size", "3", "--num-workers", "2"])):
        assert main(["detr", "predict", "--checkpoint", str(ckpt), str(photos), "--out", str(out), "--threshold", "0",
                     "--test-size", "64", "--max-size", "96", "--no-progress", *opts]) == 2
        err = capsys.readouterr()
        assert "f0.jpg" in err.out + err.err and "1 of 10 image(s) could not be used" in err.err
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in many.iterdir())
    assert names == ["a0.png", "a1.png", "a2.png", "a3.png", "b0.png", "b1.png", "c0.png", "d0.png", "e0.png",
                     "results.json"]
    a, b = _results(one), _results(many)
    assert [r["image_id"] for r in a] == [r["image_id"] for r in b]          # input order, both ways
    assert [r["image_id"] for r in a][::6] == ["a0.png", "a1.png", "a2.png", "a3.png", "b0.jpg", "b1.jpg", "c0.jpg",
                                                "d0.png", "e0.png"]
    for x, y in zip(a, b):
        assert x["category_id"] == y["category_id"]
        assert abs(x["score"] - y["score"]) <= 2e-5
        assert np.allclose(x["bbox"], y["bbox"], atol=1e-2)
    for name in ("a0.png", "b1.png", "e0.png"):
        assert np.array_equal(np.asarray(Image.open(one / name)), np.asarray(Image.open(many / name)))


def test_no_save_vis_writes_results_only(ckpt, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["detr", "predict", "--checkpoint", str(ckpt), str(photos / "a*.png"), "--out", str(out),
                 "--test-size", "64", "--no-save-vis", "--batch-size", "2"]) == 0
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert {r["image_id"] for r in _results(out)} == {"a0.png", "a1.png", "a2.png", "a3.png"}
    assert f"wrote {out / 'results.json'}" in capsys.readouterr().out


def test_pictures_are_not_written_among_the_input_images(ckpt, photos, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for out in (photos, photos / "."):
        assert main(["detr", "predict", "--checkpoint", str(ckpt), str(photos / "a0.png"), str(photos / "b0.jpg"),
                     "--out", str(out), "--test-size", "64"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bertdetr: error: --out") and "holds the input images (a0.png and 1 more)" in err, err
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    # results alone may go there (no pictures)
    assert main(["detr", "predict", "--checkpoint", str(ckpt), str(photos / "a0.png"), "--out", str(photos),
                 "--test-size", "64", "--no-save-vis"]) == 0
    assert {r["image_id"] for r in _results(photos)} == {"a0.png"}


def test_names_that_would_collide(tmp_path):
    assert image_ids(["x/a.jpg", "y/b.jpg"]) == ["a.jpg", "b.jpg"]
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam2" / "day").mkdir(parents=True)
    files = [str(tmp_path / "cam1" / "frame.jpg"), str(tmp_path / "cam2" / "day" / "frame.jpg")]
    assert image_ids(files) == ["cam1/frame.jpg", "cam2/day/frame.jpg"]
    assert picture_names(image_ids(files)) == ["cam1/frame.png", "cam2/day/frame.png"]
    assert image_ids(["p/a.jpg", "p/a.png"]) == ["a.jpg", "a.png"]
    assert picture_names(["a.jpg", "a.png"]) == ["a.jpg.png", "a.png.png"]


def test_frames_of_two_cameras_keep_both_pictures(ckpt, photos, tmp_path):
    for cam in ("cam1", "cam2"):
        (tmp_path / "in" / cam).mkdir(parents=True)
    shutil.copy(photos / "a0.png", tmp_path / "in" / "cam1" / "frame.png")
    shutil.copy(photos / "a1.png", tmp_path / "in" / "cam2" / "frame.png")
    out = tmp_path / "out"
    written = predict_images(str(ckpt), [str(tmp_path / "in" / "cam*" / "frame.png"), str(tmp_path / "in" / "cam1")],
                             str(out), test_size=64)
    assert written == [str(out / "cam1" / "frame.png"), str(out / "cam2" / "frame.png")]   # cam1's once
    assert {r["image_id"] for r in _results(out)} == {"cam1/frame.png", "cam2/frame.png"}
    assert not np.array_equal(np.asarray(Image.open(written[0])), np.asarray(Image.open(written[1])))


@pytest.mark.parametrize("opts, message", [(["--batch-size", "0"], "batch_size must be a whole number >= 1"),
                                           (["--num-workers", "-1"], "num_workers must be a whole number >= 0")])
def test_bad_counts_are_named_before_any_work(ckpt, photos, tmp_path, capsys, opts, message):
    assert main(["detr", "predict", "--checkpoint", str(ckpt), str(photos / "a0.png"), "--out", str(tmp_path / "o"),
                 *opts]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: ") and message in err
    assert not (tmp_path / "o").exists()


def _stop_after(monkeypatch, images: int):
    """detect_batch that stops the run (as a preemption would) once ``images`` images are done;
    returns the list of batch sizes it ran."""
    import bertdetr.detr.predict as predict

    ran = []

    def detect(model, tensors, *args):
        if images is not None and sum(ran) + len(tensors) > images:
            raise KeyboardInterrupt
        ran.append(len(tensors))
        return detect_batch(model, tensors, *args)   # (the module's own, imported above)

    monkeypatch.setattr(predict, "detect_batch", detect)
    return ran


def test_a_stopped_run_resumes_where_it_stopped(ckpt, photos, tmp_path, monkeypatch):
    files = [str(photos / f"a{k}.png") for k in range(4)] + [str(photos / "b0.jpg"), str(photos / "b1.jpg")]
    clean = tmp_path / "clean"
    predict_images(str(ckpt), files, str(clean), test_size=64, max_size=96)
    out = tmp_path / "out"
    ran = _stop_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        predict_images(str(ckpt), files, str(out), test_size=64, max_size=96)
    assert sum(ran) == 3 and not (out / "results.json").exists()
    lines = (out / "results.partial.jsonl").read_text().splitlines()
    assert [json.loads(line)["image_id"] for line in lines] == ["a0.png", "a1.png", "a2.png"]
    assert sorted(p.name for p in out.glob("*.png")) == ["a0.png", "a1.png", "a2.png"]   # each with its picture
    with pytest.raises(BertDetrError, match="holds the results of 3 image\\(s\\) of a run that stopped .* --resume"):
        predict_images(str(ckpt), files, str(out), test_size=64, max_size=96)
    # the line being written when the run stopped, cut short: dropped, its image done again
    with open(out / "results.partial.jsonl", "a") as f:
        f.write('{"image_id": "a3.png", "resu')
    ran = _stop_after(monkeypatch, None)
    written = predict_images(str(ckpt), files, str(out), test_size=64, max_size=96, resume=True)
    assert sum(ran) == 3                                  # a3, b0, b1 only
    assert _results(out) == _results(clean) and not (out / "results.partial.jsonl").exists()
    assert written == [str(out / (n.rsplit(".", 1)[0] + ".png")) for n in ["a0", "a1", "a2", "a3", "b0", "b1"]]
    # --overwrite: a stopped run's results dropped, every image done again
    ran = _stop_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        predict_images(str(ckpt), files, str(out), test_size=64, max_size=96)
    ran = _stop_after(monkeypatch, None)
    predict_images(str(ckpt), files, str(out), test_size=64, max_size=96, overwrite=True, save_vis=False)
    assert sum(ran) == 6 and _results(out) == _results(clean)


def test_a_run_that_never_started_leaves_nothing_to_resume(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["detr", "predict", "--checkpoint", str(tmp_path / "missing"), str(photos / "a0.png"),
                 "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err and not (out / "results.partial.jsonl").exists()


def test_bf16_autocast_detects_close_to_float32(ckpt, photos, tmp_path, capsys):
    from bertdetr.detr import pipeline
    from bertdetr.detr.weights import load_checkpoint_dir

    model = load_checkpoint_dir(ckpt, "cpu").model
    torch.manual_seed(2)
    tensors = [torch.randn(3, 48, 64) for _ in range(2)]
    full, half = (detect_batch(model, tensors, [(1.0, 1.0)] * 2, dtype=d) for d in (None, torch.bfloat16))
    for a, b in zip(full, half):
        assert b["scores"].dtype == torch.float32 and b["boxes"].dtype == torch.float32
        torch.testing.assert_close(b["scores"].sort().values, a["scores"].sort().values, atol=2e-2, rtol=0)
    out = tmp_path / "bf16"
    assert main(["detr", "predict", "--checkpoint", str(ckpt), str(photos / "a0.png"), str(photos / "b0.jpg"),
                 "--out", str(out), "--test-size", "64", "--bf16", "--no-save-vis"]) == 0
    assert {r["image_id"] for r in _results(out)} == {"a0.png", "b0.jpg"}
    assert main(["detr", "predict", "--checkpoint", str(ckpt), str(photos / "a0.png"), "--out", str(tmp_path / "x"),
                 "--bf16", "--fp16"]) == 2
    assert "choose --bf16 or --fp16, not both" in capsys.readouterr().err and not (tmp_path / "x").exists()
    detect = pipeline("object-detection", ckpt, device="cpu", test_size=64, threshold=0.0, dtype="bfloat16")
    ours32 = pipeline("object-detection", ckpt, device="cpu", test_size=64, threshold=0.0, torch_dtype=torch.float32)
    got, expected = detect(str(photos / "b0.jpg")), ours32(str(photos / "b0.jpg"))
    assert len(got) == len(expected) and all(abs(a["score"] - b["score"]) < 2e-2 for a, b in zip(got, expected))
    with pytest.raises(BertDetrError, match="dtype must be torch.bfloat16, .* got 'int8'"):
        pipeline("object-detection", ckpt, device="cpu", dtype="int8")


def test_predict_ann_compares_boxes_in_the_json_pixels(ckpt, tmp_path, monkeypatch, capsys):
    """``detr predict --ann`` on files of another size than the json says: results.json keeps the
    files' pixels (the pictures' frame), and precision and recall compare the boxes scaled to the
    json's, as ``detr eval`` does, with its warning line."""
    import dataclasses

    import bertdetr.detr.predict as predict_module
    from tests.detr.test_evaluate import _OneBox, _middle_half_dataset

    real = predict_module.load_checkpoint_dir
    monkeypatch.setattr(predict_module, "load_checkpoint_dir",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), model=_OneBox()))
    ann = _middle_half_dataset(tmp_path / "data", {"big.png": (64, 48, 128, 96, 1), "same.png": (64, 48, 64, 48, 1)})
    with pytest.warns(UserWarning) as caught:
        assert main(["detr", "predict", "--checkpoint", str(ckpt), str(tmp_path / "data" / "images"), "--out",
                     str(tmp_path / "out"), "--ann", str(ann), "--test-size", "48", "--max-size", "64",
                     "--no-save-vis"]) == 0
    assert [r["bbox"] for r in _results(tmp_path / "out")] == [[32.0, 24.0, 64.0, 48.0], [16.0, 12.0, 32.0, 24.0]]
    assert "precision 1.000 (2 of 2 boxes on an object), recall 1.000" in capsys.readouterr().out
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1 and lines[0].startswith(
        "1 of 2 images' files differ in size from the annotation json's width and height (big.png: 128x96 on disk, "
        "64x48 in the json): their detections are scaled to the json's pixels to be compared")


def test_official_pipeline_names_the_exif_turned_photos_it_runs_as_stored(ckpt, photos, tmp_path):
    """Official DETR's pipeline leaves EXIF orientation unapplied (a quirk kept on purpose): a photo
    stored turned is run and drawn as stored, turned from how a viewer shows it; one line says so,
    and which pipelines apply it. The others apply it, and say nothing."""
    import warnings

    shutil.copy(PHOTOS / "chelsea_exif.jpg", photos / "turned.jpg")  # EXIF orientation 6
    images = [str(photos / "a0.png"), str(photos / "turned.jpg")]
    with pytest.warns(UserWarning) as caught:
        predict_images(str(ckpt), images, str(tmp_path / "official"), test_size=64, pipeline="official",
                       save_vis=False)
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1 and lines[0].startswith(
        f"1 of 2 images are stored turned or mirrored, with an EXIF orientation that the official pipeline does not "
        f"apply, as official DETR does not ({photos / 'turned.jpg'}: orientation 6)")
    assert lines[0].endswith("--pipeline mmdet or bertdetr applies the orientation")
    for pipeline in ("mmdet", "bertdetr"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            predict_images(str(ckpt), images, str(tmp_path / pipeline), test_size=64, pipeline=pipeline,
                           save_vis=False)


@pytest.mark.parametrize("command, opts, message", [
    ("predict", ["--test-size", "0"], "test_size must be a whole number >= 1, got 0"),
    ("predict", ["--test-size", "-5"], "test_size must be a whole number >= 1, got -5"),
    ("predict", ["--max-size", "0"], "max_size must be a whole number >= 1, got 0"),
    ("predict", ["--max-pixels", "0"], "max_pixels must be a whole number >= 1, got 0"),
    ("eval", ["--test-size", "0"], "test_size must be a whole number >= 1, got 0"),
    ("eval", ["--max-size", "0"], "max_size must be a whole number >= 1, got 0"),
    ("attention", ["--test-size", "-5"], "test_size must be a whole number >= 1, got -5"),
    ("attention", ["--max-size", "0"], "max_size must be a whole number >= 1, got 0"),
    ("attention", ["--max-pixels", "0"], "max_pixels must be a whole number >= 1, got 0"),
])
def test_bad_scales_are_named_before_any_work(ckpt, photos, tmp_path, capsys, command, opts, message):
    """0 is not "the checkpoint's scale", -5 is not the image's fault, and ``--max-pixels 0`` would
    refuse every image: each is named (as the Python API's ``check_scale`` names them)."""
    image = str(photos / "a0.png")
    where = {"predict": [image], "attention": [image],
             "eval": ["--ann", str(tmp_path / "ann.json"), "--images", str(photos)]}[command]
    assert main(["detr", command, "--checkpoint", str(ckpt), *where, "--out", str(tmp_path / "o"), *opts]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    with pytest.raises(BertDetrError, match=message):
        predict_images(str(ckpt), [image], str(tmp_path / "o"), **{o.lstrip("-").replace("-", "_"): int(v)
                                                                    for o, v in zip(opts[::2], opts[1::2])})
    assert not (tmp_path / "o").exists()

"""``DetInferencer`` as mmdet 3.x's: its result dict and files, equal to ``inference_detector``."""

import json

import numpy as np
import pytest
from PIL import Image

from bertdetr.detr import DetInferencer, Detections, inference_detector, init_detector
from bertdetr.errors import BertDetrError
from tests.conftest import DATA
from tests.detr.test_api import setup  # noqa: F401  (the fixture: a converted mmdet 2.x model and two photos)

SMALL = {"test_size": 96, "max_size": 160}
CONFIG, WEIGHTS = DATA / "detr" / "mmdet2_detr_small.config.py", DATA / "detr" / "mmdet2_detr_small.pt"


def _expected(folder, images):
    detector = init_detector(folder, device="cpu", **SMALL)
    return [{"labels": d.labels.tolist(), "scores": d.scores.tolist(), "bboxes": d.boxes.tolist()}
            for d in inference_detector(detector, images)]


def test_predictions_and_files_as_mmdets(setup, tmp_path):
    folder, paths, _ = setup
    inferencer = DetInferencer(folder, device="cpu", **SMALL)
    out = tmp_path / "outputs"
    result = inferencer(paths, out_dir=str(out), no_save_pred=False)
    assert set(result) == {"predictions", "visualization"}
    assert result["predictions"] == _expected(folder, paths)          # every detection, best first
    first = result["predictions"][0]
    max_per_img = inferencer.detector.config.test_cfg.max_per_img
    assert len(first["scores"]) == max_per_img and first["scores"] == sorted(first["scores"], reverse=True)
    names = [p.split("/")[-1] for p in paths]
    assert sorted(f.name for f in (out / "vis").iterdir()) == sorted(names)
    for name, prediction, picture in zip(names, result["predictions"], result["visualization"]):
        stem = name.rsplit(".", 1)[0]
        assert json.loads((out / "preds" / f"{stem}.json").read_text()) == prediction
        saved = np.asarray(Image.open(out / "vis" / name).convert("RGB"))
        assert picture.dtype == np.uint8 and picture.shape == saved.shape and np.array_equal(picture, saved)
    # no out_dir, no return_vis: nothing drawn, nothing written; the predictions the same
    again = inferencer(paths[0])
    assert again == {"predictions": result["predictions"][:1], "visualization": []}


def test_pictures_arrays_folders_and_options(setup, tmp_path, capsys):
    folder, paths, _ = setup
    inferencer = DetInferencer(folder, device="cpu", show_progress=False, **SMALL)
    bgr = [np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB"))[:, :, ::-1]) for p in paths]
    out = tmp_path / "arrays"
    first = inferencer(bgr[0], out_dir=str(out), no_save_pred=False)
    second = inferencer(bgr[1], out_dir=str(out), no_save_pred=False, return_vis=True)
    # arrays are named by mmdet's counters, across calls
    assert sorted(f.name for f in (out / "vis").iterdir()) == ["00000000.jpg", "00000001.jpg"]
    assert sorted(f.name for f in (out / "preds").iterdir()) == ["0.json", "1.json"]
    assert first["predictions"] + second["predictions"] == _expected(folder, bgr)
    # pred_score_thr draws, it does not filter; draw_pred=False: the image as it is
    plain = inferencer(paths[0], return_vis=True, draw_pred=False)["visualization"][0]
    assert np.array_equal(plain, np.asarray(Image.open(paths[0]).convert("RGB")))
    none_drawn = inferencer(paths[0], return_vis=True, pred_score_thr=1.01)["visualization"][0]
    all_drawn = inferencer(paths[0], return_vis=True, pred_score_thr=0.0)["visualization"][0]
    assert none_drawn.shape == all_drawn.shape and not np.array_equal(all_drawn, none_drawn)
    assert all_drawn.shape == plain.shape  # at the image's own size, as mmdet's visualizer draws
    # a folder: its image files in name order; return_datasamples: Detections; print_result
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, path in zip(("b.PNG", "a.png"), paths):
        Image.open(path).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    samples = inferencer(str(photos), return_datasamples=True, print_result=True)["predictions"]
    assert all(isinstance(s, Detections) for s in samples)
    assert [s.scores.tolist() for s in samples] == [p["scores"] for p in _expected(folder, paths[::-1])]
    assert capsys.readouterr().out.count("{'predictions': [") == 2
    # batch_size: images of one size together, the same predictions as one at a time
    images = [paths[0], paths[1], paths[0], paths[0]]
    batched = inferencer(images, batch_size=3)["predictions"]
    for a, b in zip(batched, _expected(folder, images)):
        assert a["labels"] == b["labels"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
        np.testing.assert_allclose(a["bboxes"], b["bboxes"], atol=1e-3)


def test_mmdet_config_and_weights_or_weights_alone(setup):
    folder, paths, _ = setup
    expected = DetInferencer(folder, device="cpu", **SMALL)(paths[0])["predictions"][0]
    for inferencer in (DetInferencer(str(CONFIG), weights=str(WEIGHTS), device="cpu", **SMALL),
                       DetInferencer(weights=str(WEIGHTS), device="cpu", **SMALL)):   # the config its meta keeps
        got = inferencer(paths[0])["predictions"][0]
        assert got["labels"] == expected["labels"]
        np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-6)
        np.testing.assert_allclose(got["bboxes"], expected["bboxes"], atol=1e-4)


def test_bad_calls_are_named(setup, tmp_path):
    folder, paths, _ = setup
    inferencer = DetInferencer(folder, device="cpu", **SMALL)
    with pytest.raises(BertDetrError, match="show \\(a window\\) is not offered"):
        inferencer(paths[0], show=True)
    with pytest.raises(BertDetrError, match="DetInferencer takes batch_size, .* not texts"):
        inferencer(paths[0], texts="a cat")
    with pytest.raises(BertDetrError, match="batch_size must be a whole number >= 1"):
        inferencer(paths[0], batch_size=0)
    with pytest.raises(BertDetrError, match="pred_score_thr must be a number"):
        inferencer(paths[0], pred_score_thr="high")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BertDetrError, match="no image files .* in folder"):
        inferencer(str(tmp_path / "empty"))
    with pytest.raises(BertDetrError, match="give a checkpoint folder"):
        DetInferencer()
    with pytest.raises(BertDetrError, match="DetInferencer takes model, .* not palette"):
        DetInferencer(folder, palette="coco")

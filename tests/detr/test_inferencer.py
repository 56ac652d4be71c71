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


@pytest.mark.parametrize("name, value", [("test_size", "800"), ("test_size", -5), ("test_size", 0),
                                         ("max_size", False), ("max_pixels", 0), ("max_pixels", -1)])
def test_bad_test_scale_and_max_pixels_are_named_when_built(setup, name, value):
    folder, _, _ = setup
    with pytest.raises(BertDetrError, match=f"^{name} must be a whole number >= 1, got {value!r}$"):
        DetInferencer(folder, device="cpu", **{name: value})


def test_inputs_of_one_name_keep_their_results_apart(setup, tmp_path):
    """mmdet names a file's outputs by its base name: ``a.jpg`` beside ``a.png`` (one
    ``preds/a.json``) or ``a.jpg`` in two folders (one ``vis/a.jpg`` too) wrote over each other,
    3 predictions returned and 2 files written. The later ones get ``_1``, ``_2``, with a warning;
    unique names stay mmdet's."""
    folder, paths, _ = setup
    inferencer = DetInferencer(folder, device="cpu", show_progress=False, **SMALL)
    coll = tmp_path / "coll"
    (coll / "sub").mkdir(parents=True)
    for name, path in (("a.jpg", paths[0]), ("a.png", paths[1]), ("sub/a.jpg", paths[1]), ("b.png", paths[0]),
                       ("a_1.png", paths[0])):
        Image.open(path).convert("RGB").save(coll / name)
    images = [str(coll / n) for n in ("a.jpg", "a.png", "sub/a.jpg", "b.png", "a_1.png")]
    out = tmp_path / "out"
    # the renamed take no name another input has (a_1.png's)
    with pytest.warns(UserWarning, match="2 input\\(s\\) share a file name .*/coll/a.png as a_2.png and a_2.json; "
                      ".*/coll/sub/a.jpg as a_3.jpg and a_3.json$") as caught:
        result = inferencer(images, out_dir=str(out), no_save_pred=False)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert caught[0].filename == __file__  # the user's line, not ours
    # a.jpg, b.png and a_1.png keep mmdet's names; none is lost
    written = {"a.jpg": "a", "a_2.png": "a_2", "a_3.jpg": "a_3", "b.png": "b", "a_1.png": "a_1"}
    assert sorted(f.name for f in (out / "vis").iterdir()) == sorted(written)
    assert sorted(f.name for f in (out / "preds").iterdir()) == sorted(f"{s}.json" for s in written.values())
    for stem, prediction in zip(written.values(), result["predictions"]):
        assert json.loads((out / "preds" / f"{stem}.json").read_text()) == prediction
    assert result["predictions"] == _expected(folder, images)
    # only the files written count: pictures alone of a.jpg and a.png do not share a name
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inferencer(images[:2], out_dir=str(tmp_path / "vis_only"))
        inferencer(images[:1] * 2, out_dir=str(tmp_path / "twice"), no_save_pred=False)  # one file twice: one result
    assert sorted(f.name for f in (tmp_path / "vis_only" / "vis").iterdir()) == ["a.jpg", "a.png"]
    assert sorted(f.name for f in (tmp_path / "twice" / "preds").iterdir()) == ["a.json"]


def test_a_folder_inside_a_list_is_said_to_be_one(setup, tmp_path):
    folder, paths, _ = setup
    inferencer = DetInferencer(folder, device="cpu", show_progress=False, **SMALL)
    with pytest.raises(BertDetrError, match=f"^{tmp_path} is a folder, not an image file: DetInferencer reads a "
                       "folder given alone"):
        inferencer([paths[0], str(tmp_path)])

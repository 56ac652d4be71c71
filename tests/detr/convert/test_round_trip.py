"""Export then convert back (``detr export --format hf/mmdet``, ``detr convert --from hf/mmdet``): the
category ids, the test pipeline and the test scale come back, and so do the predictions. A foreign
file that keeps no ids is numbered as before, with a warning; transformers' image processor files of
each form it reads give their test scale."""

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from bertdetr.cli import main
from bertdetr.detr.convert.load import EXPORT_RECORD, hf_test_scale
from bertdetr.detr.model import build_detr
from bertdetr.detr.weights import save_classes, save_detr, save_pipeline
from tests.detr.test_weights import _perturb, tiny_config

IDS = [0, 7, 42, 1000000]
NAMES = ["zero", "seven", "answer", "million"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """What ``detr train`` leaves: our checkpoint with classes.json (ids no format numbers so) and
    pipeline.json ("bertdetr" at 64/96), and an image to predict on."""
    root = tmp_path_factory.mktemp("round_trip")
    torch.manual_seed(0)
    config = tiny_config(num_classes=len(IDS))
    model = _perturb(build_detr(config))
    with torch.no_grad():  # scores apart, so that a changed input or label shows
        model.head.fc_cls.weight.mul_(20)
    save_detr(model, config, root / "M")
    save_classes(root / "M", IDS, NAMES)
    save_pipeline(root / "M", "bertdetr", 64, 96)
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0112] = 6  # to be turned upright: the official pipeline does not, ours and mmdet's do
    Image.fromarray(rng.integers(0, 255, (50, 90, 3), dtype=np.uint8)).save(root / "photo.jpg", exif=exif)
    return root


def _predict(checkpoint, image, out, *opts):
    assert main(["detr", "predict", "--checkpoint", str(checkpoint), str(image), "--out", str(out), "--threshold", "0",
                 "--device", "cpu", "--no-save-vis", "--no-progress", *opts]) == 0
    return json.loads((out / "results.json").read_text())


def test_predictions_tell_the_test_scale_and_pipeline_apart(trained, tmp_path, capsys):
    """What the round trips below compare would change had the scale or the pipeline not come back."""
    recorded = _predict(trained / "M", trained / "photo.jpg", tmp_path / "a")
    for opts in (["--test-size", "800", "--max-size", "1333"], ["--pipeline", "official"], ["--pipeline", "mmdet"]):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "1 of 1 images are stored turned")  # (official's, as meant)
            other = _predict(trained / "M", trained / "photo.jpg", tmp_path / opts[1], *opts)
        assert [r["bbox"] for r in other] != [r["bbox"] for r in recorded], opts


def _files(folder):
    return {name: json.loads((folder / name).read_text()) for name in ("classes.json", "pipeline.json")}


@pytest.mark.parametrize("fmt", ["hf", "mmdet"])
def test_export_and_convert_back_keep_ids_pipeline_scale_and_predictions(trained, tmp_path, fmt, capsys):
    exported, back = tmp_path / "E", tmp_path / "R"
    assert main(["detr", "export", "--checkpoint", str(trained / "M"), "--format", fmt, "--output", str(exported)]) == 0
    source = ["--checkpoint", str(exported)] if fmt == "hf" else \
        ["--checkpoint", str(exported / "model.pth"), "--config", str(exported / "config.py")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the ids are kept: nothing is renumbered, nothing to warn of
        assert main(["detr", "convert", "--from", fmt, *source, "--output", str(back)]) == 0
    assert _files(back) == _files(trained / "M") == {
        "classes.json": {"category_ids": IDS, "class_names": NAMES},
        "pipeline.json": {"pipeline": "bertdetr", "test_size": 64, "max_size": 96}}
    capsys.readouterr()
    original, again = _predict(trained / "M", trained / "photo.jpg", tmp_path / "p0"), \
        _predict(back, trained / "photo.jpg", tmp_path / "p1")
    shown = {r["category_id"] for r in original}
    assert shown <= set(IDS) and shown - {0, 1, 2, 3}  # ids that no label index equals
    assert again == original


def test_hf_export_keeps_ids_where_transformers_loads_and_saves_them(trained, tmp_path):
    """The record is an extra key of config.json: transformers' DetrConfig keeps it (and writes it
    again), its model loads as before, its image processor reads the test scale."""
    transformers = pytest.importorskip("transformers")
    assert main(["detr", "export", "--checkpoint", str(trained / "M"), "--format", "hf", "--output",
                 str(tmp_path / "E")]) == 0
    written = json.loads((tmp_path / "E" / "config.json").read_text())
    assert written[EXPORT_RECORD] == {"category_ids": IDS, "pipeline": "bertdetr"}
    assert written["id2label"] == {str(i): n for i, n in enumerate(NAMES)}  # transformers' labels: logit indices
    config = transformers.DetrConfig.from_pretrained(tmp_path / "E")
    assert getattr(config, EXPORT_RECORD) == written[EXPORT_RECORD]
    assert transformers.DetrConfig.from_dict(config.to_dict()).to_dict()[EXPORT_RECORD] == written[EXPORT_RECORD]
    hf = transformers.DetrForObjectDetection.from_pretrained(tmp_path / "E").eval()
    processor = transformers.DetrImageProcessor.from_pretrained(tmp_path / "E")
    assert (processor.size["shortest_edge"], processor.size["longest_edge"]) == (64, 96)
    hf.save_pretrained(tmp_path / "S")  # a user's transformers round trip
    processor.save_pretrained(tmp_path / "S")
    assert main(["detr", "convert", "--from", "hf", "--checkpoint", str(tmp_path / "S"), "--output",
                 str(tmp_path / "R")]) == 0
    assert _files(tmp_path / "R") == _files(trained / "M")


def test_mmdet_export_keeps_ids_in_meta(trained, tmp_path):
    assert main(["detr", "export", "--checkpoint", str(trained / "M"), "--format", "mmdet", "--output",
                 str(tmp_path / "E")]) == 0
    meta = torch.load(tmp_path / "E" / "model.pth", weights_only=True)["meta"]
    assert meta["dataset_meta"] == {"classes": tuple(NAMES)}  # mmdet's own, as before
    assert meta[EXPORT_RECORD] == {"category_ids": IDS, "pipeline": "bertdetr"}


# ---- files that keep no ids: numbered as before, in a warning


def test_foreign_or_older_files_are_numbered_as_before_with_a_warning(trained, tmp_path, data_dir):
    from tests.detr.convert.test_load import _hf_pair

    hf, _ = _hf_pair(num_labels=4)
    hf.config.id2label = dict(enumerate(NAMES))
    hf.config.label2id = {n: i for i, n in enumerate(NAMES)}
    hf.save_pretrained(tmp_path / "hf")  # transformers' own: no preprocessor_config.json
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new class FC: no classes.json, nothing numbered
        assert main(["detr", "convert", "--from", "hf", "--checkpoint", str(tmp_path / "hf"), "--output",
                     str(tmp_path / "new"), "--num-classes", "2", "--reset-head"]) == 0
    assert not (tmp_path / "new" / "classes.json").exists()
    with pytest.warns(UserWarning, match=r"keeps no category ids of its classes: classes\.json numbers them 0\.\.3"):
        assert main(["detr", "convert", "--from", "hf", "--checkpoint", str(tmp_path / "hf"),
                     "--output", str(tmp_path / "a")]) == 0
    assert _files(tmp_path / "a") == {"classes.json": {"category_ids": [0, 1, 2, 3], "class_names": NAMES},
                                      "pipeline.json": {"pipeline": "official", "test_size": 800, "max_size": 1333}}
    # an export of an older bertdetr (no record): the scale still comes back, the ids are numbered
    assert main(["detr", "export", "--checkpoint", str(trained / "M"), "--format", "hf", "--output",
                 str(tmp_path / "old")]) == 0
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config[EXPORT_RECORD]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="keeps no category ids"):
        assert main(["detr", "convert", "--from", "hf", "--checkpoint", str(tmp_path / "old"),
                     "--output", str(tmp_path / "b")]) == 0
    assert _files(tmp_path / "b") == {"classes.json": {"category_ids": [0, 1, 2, 3], "class_names": NAMES},
                                      "pipeline.json": {"pipeline": "official", "test_size": 64, "max_size": 96}}
    # a record edited out of shape is passed over, in one line each
    config[EXPORT_RECORD] = {"category_ids": [5, 6], "pipeline": "detectron"}
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning) as caught:
        assert main(["detr", "convert", "--from", "hf", "--checkpoint", str(tmp_path / "old"),
                     "--output", str(tmp_path / "c")]) == 0
    messages = [str(w.message) for w in caught]
    assert any("pipeline 'detectron' is none of mmdet, official, bertdetr: passed over" in m for m in messages)
    assert any("lists 2 category ids for 4 classes: passed over" in m for m in messages)
    assert all("\n" not in m for m in messages)
    # mmdet: names only, numbered 1..C as mmdet's own files are
    with pytest.warns(UserWarning, match=r"classes\.json numbers them 1\.\.5") as caught:
        assert main(["detr", "convert", "--from", "mmdet", "--checkpoint",
                     str(data_dir / "detr" / "mmdet2_detr_small.pt"), "--output", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "classes.json").read_text())["category_ids"] == [1, 2, 3, 4, 5]
    from bertdetr.cli import _format_warning  # as the command line shows it: one line of ours

    w = next(w for w in caught if "numbers them" in str(w.message))
    assert _format_warning(w.message, w.category, w.filename, w.lineno).startswith(
        "bertdetr: warning: the checkpoint keeps no category ids")


def test_transformers_coco_labels_are_category_ids_without_a_warning(tmp_path):
    """transformers' COCO checkpoints key id2label by COCO category id (0..90, "N/A" at unused ids)."""
    from bertdetr.detr.convert.names import COCO_CATEGORY_IDS, COCO_CLASS_NAMES
    from tests.detr.convert.test_load import _hf_pair

    hf, _ = _hf_pair(num_labels=91)
    coco = dict(zip(COCO_CATEGORY_IDS, COCO_CLASS_NAMES))
    hf.config.id2label = {i: coco.get(i, "N/A") for i in range(91)}
    hf.config.label2id = {}
    hf.save_pretrained(tmp_path / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["detr", "convert", "--from", "hf", "--checkpoint", str(tmp_path / "hf"),
                     "--output", str(tmp_path / "o")]) == 0
    classes = json.loads((tmp_path / "o" / "classes.json").read_text())
    assert classes["category_ids"] == list(range(91)) and classes["class_names"][90] == "toothbrush"


# ---- the test scale of transformers' preprocessor_config.json, in each form it reads


@pytest.mark.parametrize("processor,scale", [
    ({"size": {"shortest_edge": 64, "longest_edge": 96}}, (64, 96)),  # transformers >= 4.26 writes
    ({"feature_extractor_type": "DetrFeatureExtractor", "size": 640, "max_size": 1000}, (640, 1000)),  # older files
    ({"size": 640}, (640, 1333)),  # max_size absent: transformers reads 1333
    ({"size": {"shortest_edge": 64, "longest_edge": 96}, "max_size": 500}, (64, 96)),  # max_size only with an int
    ({}, None),  # transformers' default, DETR's 800/1333
])
def test_hf_test_scale_reads_what_transformers_reads(tmp_path, processor, scale):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "DetrImageProcessor",
                                                                   **processor}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hf_test_scale(tmp_path) == scale
    transformers = pytest.importorskip("transformers")
    size = transformers.DetrImageProcessor.from_pretrained(tmp_path).size
    assert (size["shortest_edge"], size["longest_edge"]) == (scale or (800, 1333))


def test_hf_test_scale_of_what_our_pipelines_cannot_do(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    assert hf_test_scale(tmp_path) is None  # no file: a weights folder alone
    for processor, scale, message in [
            ({"size": {"height": 800, "width": 600}}, (600, 800), r"resizes to size \{'height': 800, 'width': 600\}"),
            ({"size": [480, 640]}, (480, 640), "'height': 480, 'width': 640"),
            ({"size": {"max_height": 500, "max_width": 700}}, (500, 700), "'max_height': 500"),
            ({"size": {"shortest_edge": 640}}, None, "is no resize of DETR's image processor"),
            ({"size": 800, "do_resize": False}, None, "does not resize")]:
        path.write_text(json.dumps(processor))
        with pytest.warns(UserWarning, match=message) as caught:
            assert hf_test_scale(tmp_path) == scale
        assert len(caught) == 1 and "\n" not in str(caught[0].message)
    path.write_text("{not json")
    from bertdetr.errors import BertDetrError

    with pytest.raises(BertDetrError, match="is not valid JSON"):
        hf_test_scale(tmp_path)


def test_init_detector_on_an_mmdet_export_keeps_its_ids_and_pipeline(trained, tmp_path):
    """mmdet's ``init_detector(config, checkpoint)`` on our mmdet export reads its meta's record as
    ``detr convert`` does: the dataset's category ids and the model's test pipeline, not 1..C and
    mmdet's."""
    from bertdetr.detr import init_detector

    assert main(["detr", "export", "--checkpoint", str(trained / "M"), "--format", "mmdet", "--output",
                 str(tmp_path / "E")]) == 0
    configs = [p for p in os.listdir(tmp_path / "E") if p.endswith(".py")]
    detector = init_detector(str(tmp_path / "E" / configs[0]) if configs else None, str(tmp_path / "E" / "model.pth"),
                             device="cpu")
    assert detector.category_ids == IDS and detector.pipeline == "bertdetr"


def test_init_detector_says_when_an_exports_ids_do_not_fit(trained, tmp_path):
    from bertdetr.detr import init_detector

    assert main(["detr", "export", "--checkpoint", str(trained / "M"), "--format", "mmdet", "--output",
                 str(tmp_path / "E")]) == 0
    raw = torch.load(tmp_path / "E" / "model.pth", weights_only=True)
    raw["meta"][EXPORT_RECORD] = {"category_ids": [1, 2]}
    torch.save(raw, tmp_path / "E" / "edited.pth")
    configs = [p for p in os.listdir(tmp_path / "E") if p.endswith(".py")]
    with pytest.warns(UserWarning, match=r"lists 2 category ids for 4 classes: passed over"):
        detector = init_detector(str(tmp_path / "E" / configs[0]) if configs else None,
                                 str(tmp_path / "E" / "edited.pth"), device="cpu")
    assert len(detector.category_ids) == 4

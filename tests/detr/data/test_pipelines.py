"""Test-time pipelines against the references: mmdet 3.3's own pipeline and ``inference_detector``
(golden files in tests/data/detr/pipeline, made by make_pipeline_golden.py), official DETR's
transforms (torchvision on PIL, run here)."""

import pytest
import torch
from PIL import Image

from bertdetr.detr.data.coco import ImageLoadError
from bertdetr.detr.data.pipelines import (
    PIPELINES,
    mmcv_imread,
    mmcv_rescale_size,
    mmdet_prepare,
    official_imread,
    official_prepare,
    prepare_image,
)
from bertdetr.detr.postprocess import DetrPostProcess
from bertdetr.detr.weights import load_pipeline, save_pipeline
from bertdetr.errors import BertDetrError
from tests.conftest import DATA

PIPE = DATA / "detr" / "pipeline"


@pytest.fixture(scope="module")
def mmdet_inference():
    return torch.load(PIPE / "mmdet_inference.pt", weights_only=True)


def _detect(model, config, prepared):
    with torch.no_grad():
        out = model(prepared.tensor[None])
    return DetrPostProcess(config.test_cfg.max_per_img)(out, [tuple(prepared.tensor.shape[1:])],
                                                       [prepared.scale_factor])[0]


def test_golden_covers_grey_rgba_exif_and_several_sizes(mmdet_inference):
    names = set(mmdet_inference["images"])
    assert {"camera_grey.png", "coffee_rgba.png", "chelsea_exif.jpg", "astronaut.jpg", "astronaut_tall.jpg"} <= names
    assert len({tuple(e["ori_shape"].tolist()) for e in mmdet_inference["images"].values()}) == len(names)


def test_mmdet_pipeline_input_equals_mmdets(mmdet_inference):
    for name, e in mmdet_inference["images"].items():
        prepared = prepare_image(PIPE / name, "mmdet")
        x = prepared.tensor
        assert tuple(x.shape[1:]) == tuple(e["img_shape"].tolist()), name  # rounded, not floored
        assert (prepared.image.height, prepared.image.width) == tuple(e["ori_shape"].tolist()), name
        assert prepared.scale_factor == tuple(e["scale_factor"].tolist()), name
        torch.testing.assert_close(x.double().sum((1, 2)), e["input_channel_sums"], rtol=1e-9, atol=0, msg=name)
        h, w = x.shape[1:]
        torch.testing.assert_close(x[:, h // 2 - 12:h // 2 + 12, w // 2 - 12:w // 2 + 12], e["input_crop"],
                                   rtol=0, atol=1e-6, msg=name)
        # the whole resized uint8 image at a second, small scale: byte for byte
        bgr = mmcv_imread(PIPE / name)
        (nw, nh), _ = mmcv_rescale_size(bgr.shape[1], bgr.shape[0], tuple(mmdet_inference["small_scale"]))
        import cv2

        small = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        assert torch.equal(torch.from_numpy(small).permute(2, 0, 1), e["small_scale_chw_bgr_uint8"]), name


def test_mmdet_pipeline_detections_equal_inference_detector(mmdet_inference, golden_model):
    """Goal of issue 10: scores and boxes within 1e-3 relative of mmdet's; measured ~1e-6."""
    model, config = golden_model
    for name, e in mmdet_inference["images"].items():
        det = _detect(model, config, prepare_image(PIPE / name, "mmdet"))
        assert torch.equal(det["labels"], e["labels"]), name
        torch.testing.assert_close(det["scores"], e["scores"], rtol=1e-5, atol=0, msg=name)
        torch.testing.assert_close(det["boxes"], e["bboxes"], rtol=0, atol=1e-5 * float(e["bboxes"].abs().max()),
                                   msg=name)


def test_official_pipeline_is_official_detrs_and_not_mmdets(mmdet_inference):
    """Official DETR truncates the long side (1332 where mmdet rounds to 1333) and ignores EXIF."""
    import torchvision.transforms as T

    assert tuple(prepare_image(PIPE / "astronaut_tall.jpg", "official").tensor.shape[1:]) == (1332, 622)
    assert mmdet_inference["images"]["astronaut_tall.jpg"]["img_shape"].tolist() == [1333, 622]
    assert prepare_image(PIPE / "chelsea_exif.jpg", "official").image.size == (301, 200)  # stored pixels
    assert prepare_image(PIPE / "chelsea_exif.jpg", "bertdetr").image.size == (200, 301)  # as displayed
    image = official_imread(PIPE / "camera_grey.png")
    x, scale = official_prepare(image)
    h, w = x.shape[1:]
    reference = T.Compose([T.Resize((h, w)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    torch.testing.assert_close(x, reference(image), rtol=0, atol=1e-6)
    assert scale == (w / 200, h / 150)


def test_mmcv_rescale_size_rounds_half_up():
    assert mmcv_rescale_size(200, 150) == ((1067, 800), 800 / 150)
    assert mmcv_rescale_size(1013.4, 800)[0] == (1013, 800)
    assert mmcv_rescale_size(140, 300)[0] == (622, 1333)  # the long side binds


def test_mmdet_prepare_normalises_on_the_255_scale():
    import numpy as np

    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    x, scale = mmdet_prepare(bgr, (12, 8))
    assert x.shape == (3, 8, 12) and scale == (2.0, 2.0)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([-123.675 / 58.395, -116.28 / 57.12, (255 - 103.53) / 57.375]))


def test_pipeline_record_and_bad_input(tmp_path):
    assert load_pipeline(tmp_path) == "bertdetr"  # nothing recorded: trained here
    for name in PIPELINES:
        save_pipeline(tmp_path, name)
        assert load_pipeline(tmp_path) == name
    with pytest.raises(BertDetrError, match="unknown pipeline 'caffe'"):
        save_pipeline(tmp_path, "caffe")
    (tmp_path / "pipeline.json").write_text('{"pipeline": "caffe"}')
    with pytest.raises(BertDetrError, match="unknown pipeline"):
        load_pipeline(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    for name in PIPELINES:
        with pytest.raises(ImageLoadError, match="cannot read image"):
            prepare_image(tmp_path / "broken.png", name)
        with pytest.raises(ImageLoadError, match="not found"):
            prepare_image(tmp_path / "missing.png", name)


def test_convert_records_pipeline_and_predict_eval_use_it(tmp_path, data_dir, mmdet_inference, capsys):
    import json

    from bertdetr.cli import main

    ckpt = tmp_path / "ckpt"
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet_detr_small.pt"),
                 "--config", str(data_dir / "detr" / "mmdet_detr_small.config.json"), "--output", str(ckpt)]) == 0
    assert load_pipeline(ckpt) == "mmdet"
    # predict: mmdet's pipeline by default, so mmdet's own scores
    assert main(["detr", "predict", "--checkpoint", str(ckpt), str(PIPE / "camera_grey.png"), "--out",
                 str(tmp_path / "pred"), "--threshold", "0"]) == 0
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    expected = mmdet_inference["images"]["camera_grey.png"]
    assert [r["score"] for r in results] == pytest.approx(expected["scores"].tolist(), abs=1e-5)
    assert main(["detr", "predict", "--checkpoint", str(ckpt), str(PIPE / "astronaut_tall.jpg"), "--out",
                 str(tmp_path / "pred2"), "--pipeline", "caffe"]) == 2
    assert capsys.readouterr().err.startswith("bertdetr: error: unknown pipeline 'caffe'")
    # eval: per-class AP and the summary table, with the pipeline used
    names = ["astronaut.jpg", "camera_grey.png", "coffee_rgba.png"]
    ann = {"images": [], "annotations": [], "categories": [{"id": i, "name": f"thing{i}"} for i in range(1, 6)]}
    for i, name in enumerate(names):
        w, h = Image.open(PIPE / name).size
        ann["images"].append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for j, r in enumerate(results[:3]):  # boxes where the model looks, classes 1..3
            ann["annotations"].append({"id": 10 * i + j + 1, "image_id": i + 1, "category_id": j + 1, "iscrowd": 0,
                                       "bbox": [5.0 * j, 5.0 * j, w / 2, h / 2], "area": w * h / 4})
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    for extra, pipeline in (([], "mmdet"), (["--pipeline", "official"], "official")):
        out = tmp_path / f"ev_{pipeline}"
        assert main(["detr", "eval", "--checkpoint", str(ckpt), "--ann", str(tmp_path / "ann.json"), "--images",
                     str(PIPE), "--out", str(out), "--test-size", "200", "--max-size", "333", *extra]) == 0
        printed = capsys.readouterr().out
        metrics = json.loads((out / "eval_metrics.json").read_text())
        assert metrics["pipeline"] == pipeline and len(metrics["summary"]) == 12
        assert list(metrics["per_class_ap"]) == [f"thing{k}" for k in range(1, 6)]  # no classes.json: the dataset's
        assert metrics["per_class_ap"]["thing5"] is None  # no ground truth of category 5
        assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in printed
        assert "per-class AP:" in printed and "n/a (no ground truth)" in printed

"""Makes tests/data/detr/pipeline/: photos and MMDetection 3.3's own test pipeline and
``inference_detector`` on them, with the small golden DETR (mmdet_detr_small.pt).

Run once, in a throwaway venv with the references (not a test dependency):

    python -m venv --system-site-packages /work/venvs/mmdet
    /work/venvs/mmdet/bin/pip install mmengine mmdet==3.3.0 mmcv-lite==2.1.0 opencv-python-headless scikit-image
    /work/venvs/mmdet/bin/python tests/data/detr/make_pipeline_golden.py

mmcv-lite is mmcv 2.1.0's Python without its compiled ops, which mmdet's modules import but DETR
never calls; a stand-in ``mmcv/_ext.py`` whose every function raises NotImplementedError lets them
import (see BENCHMARKS.md). Everything that runs here is the real mmcv/mmdet code: LoadImageFromFile
(cv2 decode), Resize (mmcv.imrescale, cv2 INTER_LINEAR), PackDetInputs, DetDataPreprocessor, the
DETR model and DETRHead.predict (rescale=True).
"""

import json
import os

import numpy as np
import skimage.data
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "pipeline")
SMALL_SCALE = (200, 128)  # a second, small Resize scale whose whole uint8 output is kept


def make_images() -> list[str]:
    os.makedirs(OUT, exist_ok=True)
    astronaut, chelsea, coffee, camera = (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
                                          skimage.data.camera())
    images = {}
    images["astronaut.jpg"] = Image.fromarray(astronaut).resize((300, 300), Image.Resampling.LANCZOS)
    images["astronaut_tall.jpg"] = Image.fromarray(astronaut[40:500, 180:400]).resize((140, 300), Image.Resampling.LANCZOS)
    images["camera_grey.png"] = Image.fromarray(camera[60:460, :]).resize((200, 150), Image.Resampling.LANCZOS)
    rgb = np.asarray(Image.fromarray(coffee).resize((270, 180), Image.Resampling.LANCZOS))
    alpha = np.linspace(40, 255, rgb.shape[1]).astype(np.uint8)[None, :].repeat(rgb.shape[0], 0)
    images["coffee_rgba.png"] = Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    paths = []
    for name, image in images.items():
        path = os.path.join(OUT, name)
        image.save(path, quality=90) if name.endswith(".jpg") else image.save(path)
        paths.append(path)
    # EXIF orientation 6 (rotate 90 clockwise to display): stored 301x200, shown 200x301
    exif = Image.Exif()
    exif[0x0112] = 6
    path = os.path.join(OUT, "chelsea_exif.jpg")
    Image.fromarray(chelsea).resize((301, 200), Image.Resampling.LANCZOS).save(path, quality=90, exif=exif)
    paths.append(path)
    return paths


def mmdet_config(model_cfg: dict, scale) -> dict:
    pipeline = [dict(type="LoadImageFromFile", backend_args=None),
                dict(type="Resize", scale=scale, keep_ratio=True),
                dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))]
    return dict(default_scope="mmdet", model=model_cfg,
                test_dataloader=dict(dataset=dict(type="CocoDataset", pipeline=pipeline)))


def main():
    from mmengine.config import Config
    from mmdet.apis import inference_detector, init_detector
    from mmdet.utils import register_all_modules
    from mmcv.transforms import Compose

    register_all_modules()
    golden = torch.load(os.path.join(HERE, "mmdet_detr_small.pt"), weights_only=True)
    with open(os.path.join(HERE, "mmdet_detr_small.config.json")) as f:
        model_cfg = json.load(f)["model"]
    # the dumped config holds the class weights DETRHead built ("tensor([1., ..., 0.1])"); its
    # source config said class_weight=1.0, bg_cls_weight=0.1
    model_cfg["bbox_head"]["loss_cls"].update(class_weight=1.0, bg_cls_weight=0.1)
    model = init_detector(Config(mmdet_config(model_cfg, (1333, 800))), None, device="cpu")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in golden["state_dict"].items()})
    model.eval()
    small = Compose(mmdet_config(model_cfg, SMALL_SCALE)["test_dataloader"]["dataset"]["pipeline"])
    full = Compose(mmdet_config(model_cfg, (1333, 800))["test_dataloader"]["dataset"]["pipeline"])
    out = {}
    for path in make_images():
        name = os.path.basename(path)
        data = full(dict(img_path=path, img_id=0))
        batch = model.data_preprocessor({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}, False)
        x = batch["inputs"][0].double()
        meta = data["data_samples"].metainfo
        h, w = meta["img_shape"]
        result = inference_detector(model, path).pred_instances
        s = small(dict(img_path=path, img_id=0))
        out[name] = {
            "ori_shape": torch.tensor(meta["ori_shape"]), "img_shape": torch.tensor(meta["img_shape"]),
            "scale_factor": torch.tensor(meta["scale_factor"], dtype=torch.float64),
            "input_channel_sums": x.sum((1, 2)), "input_abs_sum": x.abs().sum(),
            "input_crop": batch["inputs"][0][:, h // 2 - 12:h // 2 + 12, w // 2 - 12:w // 2 + 12].clone(),
            "small_scale_chw_bgr_uint8": s["inputs"].clone(),
            "scores": result.scores.clone(), "labels": result.labels.clone(), "bboxes": result.bboxes.clone(),
        }
        print(name, meta["ori_shape"], meta["img_shape"], [round(v, 5) for v in result.scores[:4].tolist()])
    torch.save({"small_scale": SMALL_SCALE, "images": out}, os.path.join(OUT, "mmdet_inference.pt"))


if __name__ == "__main__":
    main()

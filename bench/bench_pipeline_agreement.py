"""DETR's test-time pipelines against MMDetection 3.3's ``inference_detector`` on photos.

Reads tests/data/detr/pipeline (photos and mmdet's own outputs on them with the small golden DETR,
made by tests/data/detr/make_pipeline_golden.py) and prints, per photo and pipeline, the input
size and the largest relative difference of the top-10 scores and boxes from mmdet's. Needs no
mmdet. Run: PYTHONPATH=src python bench/bench_pipeline_agreement.py
"""

import json
import pathlib

import torch

from bertdetr.detr.data.pipelines import PIPELINES, prepare_image
from bertdetr.detr.postprocess import DetrPostProcess
from bertdetr.detr.convert.load import from_mmdet

DATA = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "detr"


def main():
    golden = torch.load(DATA / "mmdet_detr_small.pt", weights_only=True)
    model, config = from_mmdet(json.loads((DATA / "mmdet_detr_small.config.json").read_text()), golden["state_dict"])
    expected = torch.load(DATA / "pipeline" / "mmdet_inference.pt", weights_only=True)["images"]
    print("| photo | mmdet input (h x w) | pipeline | input | labels equal | scores: max rel. diff | boxes: max diff / largest coordinate |")
    print("|---|---|---|---|---|---|---|")
    for name, e in expected.items():
        for pipeline in PIPELINES:
            p = prepare_image(DATA / "pipeline" / name, pipeline)
            with torch.no_grad():
                out = model(p.tensor[None])
            det = DetrPostProcess(config.test_cfg.max_per_img)(out, [tuple(p.tensor.shape[1:])], [p.scale_factor])[0]
            k = min(10, len(e["scores"]))
            ds = float(((det["scores"][:k] - e["scores"][:k]).abs() / e["scores"][:k].abs()).max())
            db = float((det["boxes"][:k] - e["bboxes"][:k]).abs().max() / e["bboxes"][:k].abs().max())
            h, w = e["img_shape"].tolist()
            ph, pw = p.tensor.shape[1:]
            print(f"| {name} | {h} x {w} | {pipeline} | {ph} x {pw} | {torch.equal(det['labels'][:k], e['labels'][:k])} "
                  f"| {ds:.1e} | {db:.1e} |")


if __name__ == "__main__":
    main()

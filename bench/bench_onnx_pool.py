"""What ``EvenPaddedMaxPool`` costs an ONNX inference: DETR (R50, random weights) exported as
``detr export --format onnx`` exports it, once with the stem's own max pool and once with the
padded one, both run in onnxruntime on one 800x1067 image (an odd width, so the pad is not empty),
alternating, medians. Needs a torch whose export takes the plain pool at dynamic sizes (2.14; on
2.9 and 2.11 only the padded one exports).

    python bench/bench_onnx_pool.py [--repeats 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

import numpy as np
import torch


class _Outputs(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, masks):
        out = self.model(images, masks)
        return out["pred_logits"], out["pred_boxes"]


def export(model, path: str) -> None:
    """As ``export_onnx`` traces it (its swap of the pool left to the caller here)."""
    images, masks = torch.zeros(2, 3, 160, 192), torch.zeros(2, 160, 192, dtype=torch.bool)
    masks[1, 128:] = True
    B, H, W = torch.export.Dim("batch"), torch.export.Dim("height", min=64), torch.export.Dim("width", min=64)
    program = torch.onnx.export(_Outputs(model).eval(), (images, masks), dynamo=True, opset_version=18,
                                input_names=["images", "masks"], output_names=["pred_logits", "pred_boxes"],
                                dynamic_shapes=({0: B, 2: H, 3: W}, {0: B, 1: H, 2: W}), verbose=False)
    program.optimize()
    program.save(path)


def main() -> None:
    import onnxruntime as ort

    from bertdetr.detr.config import DETRConfig
    from bertdetr.detr.model import EvenPaddedMaxPool, build_detr

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build_detr(DETRConfig().with_num_classes(80)).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("plain", "padded"):
            m = copy.deepcopy(model)
            if name == "padded":
                m.backbone.maxpool = EvenPaddedMaxPool()
            export(m, os.path.join(tmp, f"{name}.onnx"))
            sessions[name] = ort.InferenceSession(os.path.join(tmp, f"{name}.onnx"), options,
                                                  providers=["CPUExecutionProvider"])
    feed = {"images": np.random.default_rng(0).standard_normal((1, 3, 800, 1067), dtype=np.float32),
            "masks": np.zeros((1, 800, 1067), bool)}
    outputs = {name: s.run(None, feed) for name, s in sessions.items()}
    diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs["plain"], outputs["padded"]))
    times = {name: [] for name in sessions}
    for _ in range(args.repeats):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feed)
            times[name].append(time.perf_counter() - start)
    plain, padded = statistics.median(times["plain"]), statistics.median(times["padded"])
    print(f"torch {torch.__version__}, {args.threads} threads, 800x1067: outputs differ by at most {diff:g}; "
          f"plain pool {plain:.3f} s, padded {padded:.3f} s: padded / plain {padded / plain:.3f}")


if __name__ == "__main__":
    main()

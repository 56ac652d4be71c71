"""DETR-R50 speed side by side with transformers' DetrForObjectDetection, same weights, fp32.

    python bench/bench_detr.py [--threads 2] [--repeats 5] [--height 800 --width 1066] [--device cpu] [--batch 1]

Builds transformers' DETR-R50 (its own ResNet backbone, so no timm and no download), random
weights with perturbed frozen-BatchNorm statistics, converts them with ``bertdetr.detr.from_hf``,
checks that both give the same outputs (logits and boxes, in eval and in train mode) and then times, interleaved ours/theirs, repeats times each:
- inference: one image, eval, ``torch.no_grad``;
- training step: forward + losses + backward, train mode, dropout 0 in both (so outputs compare).
Trainable parameters are set equal in both (mmdet/official DETR: the stem and stage 1 frozen,
stages 2-4 and the transformer trained); transformers' non-timm ResNet path freezes its whole
backbone by a name mismatch ("stage.1" vs "stages.1"), which would skip most of its backward.
Ours computes the losses of all 6 decoder layers (mmdet's training objective); transformers only
the last layer's (``auxiliary_loss=False``: its 5.x decoder feeds the normed intermediate outputs
to the next layer when ``auxiliary_loss=True``, which is not DETR) -- so ours does more work.
Reports medians in seconds and images/s, and minima and process CPU time (both threads), which
other work on the machine disturbs less than the wall-clock median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def hf_detr_model(depth: int, num_labels: int, **config):
    """transformers' DETR with its own ResNet-``depth`` (18 or 50; no timm, no download), ``config``
    given to its ``DetrConfig``; trainable as mmdet's (the stem and stage 1 frozen, stages 2-4 and
    the transformer trained): transformers' non-timm ResNet path freezes its whole backbone by a
    name mismatch ("stage.1" vs "stages.1"), which would skip most of its backward."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    blocks = {18: ("basic", [2, 2, 2, 2], [64, 128, 256, 512]), 50: ("bottleneck", [3, 4, 6, 3], [256, 512, 1024, 2048])}
    kind, depths, widths = blocks[depth]
    backbone = ResNetConfig(layer_type=kind, depths=depths, hidden_sizes=widths, embedding_size=64, out_features=["stage4"])
    model = DetrForObjectDetection(DetrConfig(backbone_config=backbone, use_timm_backbone=False, num_labels=num_labels,
                                              **config))
    for name, p in model.model.backbone.model.named_parameters():
        p.requires_grad_(any(f"stages.{i}." in name for i in (1, 2, 3)))
    return model


def build_pair(num_labels: int = 91):
    from bertdetr.detr.convert.load import from_hf

    torch.manual_seed(0)
    hf = hf_detr_model(50, num_labels, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, auxiliary_loss=False)
    sd = hf.state_dict()
    g = torch.Generator().manual_seed(1)
    for k, v in sd.items():  # frozen BN statistics that matter, as a trained backbone has
        if k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) * 0.5 + 0.75)
        elif k.endswith("running_mean") or (k.endswith("bias") and "normalization" in k):
            v.copy_(torch.randn(v.shape, generator=g) * 0.05)
    hf.load_state_dict(sd)
    ours, config = from_hf(sd, hf_config=hf.config.to_dict())
    return ours, config, hf


def targets_for(h: int, w: int):
    boxes = torch.tensor([[100.0, 120.0, 400.0, 500.0], [500.0, 50.0, 1000.0, 700.0], [30.0, 600.0, 200.0, 780.0]])
    labels = torch.tensor([17, 1, 62])
    return boxes, labels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1066)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1, help="images per step (copies of one image)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-infer", action="store_true")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    from bertdetr.detr.boxes import box_xyxy_to_cxcywh
    from bertdetr.detr.loss import build_criterion

    ours, config, hf = build_pair()
    ours.to(dev)
    hf.to(dev)
    criterion = build_criterion(config)
    H, W = args.height, args.width
    B = args.batch
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(2)).expand(B, -1, -1, -1).contiguous().to(dev)
    boxes, labels = targets_for(H, W)
    our_targets = [{"boxes": boxes.to(dev), "labels": labels.to(dev)}] * B
    norm = boxes / torch.tensor([W, H, W, H], dtype=torch.float32)
    hf_labels = [{"class_labels": labels.to(dev), "boxes": box_xyxy_to_cxcywh(norm).to(dev)}] * B

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def infer_ours():
        with torch.no_grad():
            return ours(x)

    def infer_hf():
        with torch.no_grad():
            return hf(pixel_values=x)

    def train_ours():
        out = ours(x)
        losses = criterion(out, our_targets, [(H, W)] * B)
        criterion.total(losses).backward()
        return losses

    def train_hf():
        out = hf(pixel_values=x, labels=hf_labels)
        out.loss.backward()
        return out.loss_dict

    # equal outputs
    ours.eval()
    hf.eval()
    o, h = infer_ours(), infer_hf()
    d_logits = (o["pred_logits"] - h.logits).abs().max().item()
    d_boxes = (o["pred_boxes"] - h.pred_boxes).abs().max().item()
    print(f"inference max |diff|: logits {d_logits:.2e}, boxes {d_boxes:.2e}")
    assert d_logits < 1e-3 and d_boxes < 1e-3, "outputs differ"
    results = {}
    timings = {"ours infer": [], "hf infer": [], "ours train": [], "hf train": []}

    cpu = {k: [] for k in timings}

    def timed(fn, key):
        sync()
        t, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        timings[key].append(time.perf_counter() - t)
        cpu[key].append(time.process_time() - c)

    infer_ours(), infer_hf()  # warm-up
    for _ in range(0 if args.skip_infer else args.repeats):
        timed(infer_ours, "ours infer")
        timed(infer_hf, "hf infer")
    if not args.skip_train:
        ours.train()
        hf.train()
        with torch.no_grad():
            o, h = ours(x), hf(pixel_values=x)
        d_train = max((o["pred_logits"] - h.logits).abs().max().item(), (o["pred_boxes"] - h.pred_boxes).abs().max().item())
        print(f"train-mode outputs max |diff|: {d_train:.2e}")
        assert d_train < 1e-3, "train-mode outputs differ"
        train_ours(), train_hf()  # warm-up (losses are not compared: random weights make near-tied
        ours.zero_grad(set_to_none=True)  # matching costs, which each side may break differently)
        hf.zero_grad(set_to_none=True)
        for _ in range(args.repeats):
            timed(train_ours, "ours train")
            ours.zero_grad(set_to_none=True)
            timed(train_hf, "hf train")
            hf.zero_grad(set_to_none=True)
    best = {}
    for k, v in timings.items():
        if v:
            results[k], best[k] = statistics.median(v), min(v)
            print(f"{k:11s} median {results[k]:.3f} s ({B / results[k]:.2f} img/s), min {best[k]:.3f} s, "
                  f"median CPU time {statistics.median(cpu[k]):.3f} s  all: " + " ".join(f"{t:.3f}" for t in v))
    for what in ("infer", "train"):
        if f"ours {what}" in results:
            print(f"{what} speed-up (hf / ours): median {results[f'hf {what}'] / results[f'ours {what}']:.2f}x, "
                  f"min {best[f'hf {what}'] / best[f'ours {what}']:.2f}x, CPU time "
                  f"{statistics.median(cpu[f'hf {what}']) / statistics.median(cpu[f'ours {what}']):.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (at the start: {load0:.2f}) on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

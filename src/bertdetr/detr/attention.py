"""``bertdetr detr attention``: the DETR paper's pictures of what the transformer attends to.

- Decoder cross-attention of the last layer for chosen detections (paper Fig. 6): where the
  object query that made a detection looks in the image, typically its object's extremities.
- Encoder self-attention of the last layer at chosen points (paper Fig. 3): which image regions
  a feature-map location attends to, typically its whole object instance.

The model computes attention with ``scaled_dot_product_attention``, which returns no weights;
forward hooks on those two attention modules hand each call's own arguments to the module's
``attention_weights`` (the probabilities that call weighted its values by), leaving the model
untouched. Detections are ``DetrPostProcess``'s, as ``detr predict`` draws them.
"""

from __future__ import annotations

import os
import random

import torch
from PIL import ImageDraw

from bertdetr.detr.data.coco import MAX_PIXELS, load_image
from bertdetr.detr.data.pipelines import check_resizable
from bertdetr.detr.model import DETR
from bertdetr.detr.postprocess import DetrPostProcess
from bertdetr.detr.data.transforms import eval_transforms
from bertdetr.detr.visualize import class_color, draw_detections, overlay_heatmap
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output


@torch.no_grad()
def capture_attention(model: DETR, images: torch.Tensor, masks: torch.Tensor) -> dict:
    """Runs the model once; returns its outputs plus ``decoder_attention`` [B,Q,h,w] (last decoder
    layer's cross-attention), ``encoder_attention`` [B,h*w,h,w] (last encoder layer's
    self-attention, one map per feature location) and ``feature_hw`` (h, w)."""
    captured: dict = {}

    def weights_of(name):
        def hook(module, args, kwargs, output):
            # The module's weights for the call it just made: the same arguments, whatever they are.
            captured[name] = module.attention_weights(*args, **kwargs).mean(1)  # head average [B,F,T]
        return hook

    handles = [
        model.input_proj.register_forward_hook(lambda m, a, o: captured.__setitem__("feat", o)),
        model.decoder.layers[-1].cross_attn.register_forward_hook(weights_of("cross"), with_kwargs=True),
        model.encoder.layers[-1].self_attn.register_forward_hook(weights_of("self"), with_kwargs=True),
    ]
    try:
        outputs = model(images, masks)
    finally:
        for h in handles:
            h.remove()
    B, _, h, w = captured["feat"].shape
    cross, enc = captured["cross"], captured["self"]
    outputs["decoder_attention"] = cross.view(B, -1, h, w)
    outputs["encoder_attention"] = enc.view(B, h * w, h, w)
    outputs["feature_hw"] = (h, w)
    return outputs


def attention_pictures(model: DETR, image_path: str, out_dir: str, class_names: list[str],
                       threshold: float = 0.7, points: list[tuple[int, int]] | None = None, top: int = 4,
                       test_size: int = 800, max_size: int = 1333, max_pixels: int | None = MAX_PIXELS) -> list[str]:
    """Writes ``<name>_det<k>.png`` (decoder attention of each detection scoring >= ``threshold``,
    at most ``top``) and ``<name>_enc<k>.png`` (encoder attention at each of ``points``, pixel
    (x, y) of the image); returns the paths. An image of more than ``max_pixels`` pixels, or too
    thin to resize, is an ``ImageLoadError``."""
    from bertdetr.detr.predict import check_threshold

    check_threshold(threshold)
    image = load_image(image_path, max_pixels=max_pixels)
    check_resizable(image_path, image.width, image.height, test_size, max_size)
    for x, y in points or []:  # before any picture is written
        if not (0 <= x < image.width and 0 <= y < image.height):
            raise BertDetrError(f"point ({x}, {y}) is outside the image ({image.width} x {image.height})")
    device = next(model.parameters()).device
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "size": torch.tensor([image.height, image.width])}
    tensor, target = eval_transforms(test_size, max_size)(image, empty, random.Random(0))
    H, W = (int(v) for v in target["size"])
    model.eval()
    out = capture_attention(model, tensor[None].to(device), None)  # one image: nothing padded
    h, w = out["feature_hw"]
    # Every query's detection, best first, in the image's own pixels (as `detr predict`).
    det = DetrPostProcess(max_per_img=out["pred_logits"].shape[1])(
        out, [(H, W)], [(W / image.width, H / image.height)])[0]
    det = {k: v.float().cpu() if k in ("scores", "boxes") else v.cpu() for k, v in det.items()}
    name = os.path.splitext(os.path.basename(image_path))[0]
    written = []
    for k in range(min(top, int((det["scores"] >= threshold).sum()))):
        q = int(det["queries"][k])
        picture = overlay_heatmap(image, out["decoder_attention"][0, q].float().cpu().numpy())
        picture = draw_detections(picture, det["boxes"][k:k + 1].numpy(), det["scores"][k:k + 1].numpy(),
                                  det["labels"][k:k + 1].numpy(), class_names)
        written.append(_save(picture, os.path.join(out_dir, f"{name}_det{k}.png")))
    for k, (x, y) in enumerate(points or []):
        cell = min(int(y * H / image.height * h / H), h - 1) * w + min(int(x * W / image.width * w / W), w - 1)
        picture = overlay_heatmap(image, out["encoder_attention"][0, cell].float().cpu().numpy())
        draw = ImageDraw.Draw(picture)
        r = max(3, min(image.size) // 80)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=class_color(k), outline=(0, 0, 0))
        written.append(_save(picture, os.path.join(out_dir, f"{name}_enc{k}.png")))
    return written


def _save(picture, path: str) -> str:
    with atomic_output(path, "wb") as f:
        picture.save(f, format="PNG")
    return path

"""Operations an eager training step dispatches, ours against transformers', counted with torch.profiler.

On a GPU an eager step is host-bound when launching its operations takes longer than running
them (the 2026-11-26 H100 run: BERT-base bf16 at batch 64, 11% MFU on both sides), and each
operation Python dispatches costs host time whatever the tensors' size. So the count is a
figure this CPU can measure for the GPU: the operations called from Python (the outermost aten
operators of the step: forward, losses) and the backward nodes the autograd engine runs, per
training step (forward, losses, backward; the optimizer apart), after two warm-up steps.

- DETR-R50 (bench_detr.py's pair: transformers' ``DetrForObjectDetection`` with its own ResNet,
  ours converted from it), both with every decoder layer's losses (transformers'
  ``auxiliary_loss=True``), batch 2 of 64x64 images (the counts do not depend on the size);
- BERT-base's layer count (12 layers, hidden 64: the counts do not depend on the width),
  pretraining losses on a batch of 8 sequences of 128 with 20 masked positions: ours
  (``build_bert_for_pretraining``) and transformers' ``BertForPreTraining`` (sdpa), the same weights.

    python bench/count_step_ops.py
"""

from __future__ import annotations

import collections
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def count_ops(step) -> dict:
    """Per call of ``step`` (after two warm-up calls): the outermost operations Python dispatched,
    the backward nodes, every profiled CPU operation, and the ten commonest outermost ones."""
    step()
    step()
    with torch.profiler.profile() as prof:
        step()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
    top = [e for e in events if e.cpu_parent is None]
    backward = [e for e in top if e.name.startswith("autograd::engine")]
    dispatched = [e for e in top if not e.name.startswith("autograd::engine")]
    return {"dispatched": len(dispatched), "backward_nodes": len(backward), "all_ops": len(events),
            "commonest": collections.Counter(e.name for e in dispatched).most_common(10)}


def detr_steps():
    sys.path.insert(0, HERE)
    from bench_detr import build_pair, targets_for

    from bertdetr.detr.boxes import box_xyxy_to_cxcywh
    from bertdetr.detr.loss import build_criterion

    ours, config, hf = build_pair()
    hf.config.auxiliary_loss = True  # every decoder layer's losses, as ours
    criterion = build_criterion(config)
    H = W = 64
    B = 2
    x = torch.randn(B, 3, H, W, generator=torch.Generator().manual_seed(0))
    boxes, labels = targets_for(800, 1066)
    boxes = boxes / torch.tensor([1066.0, 800.0, 1066.0, 800.0]) * torch.tensor([W, H, W, H])
    ours_targets = [{"boxes": boxes, "labels": labels}] * B
    hf_targets = [{"class_labels": labels, "boxes": box_xyxy_to_cxcywh(boxes / torch.tensor([W, H, W, H]))}] * B
    ours.train()
    hf.train()

    def ours_step():
        out = ours(x)
        criterion.total(criterion(out, ours_targets, [(H, W)] * B)).backward()

    def hf_step():
        hf(pixel_values=x, labels=hf_targets).loss.backward()

    return ours_step, hf_step


def bert_steps():
    import transformers

    from bertdetr.bert.model import BertConfig, build_bert_for_pretraining

    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=12, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=512)
    torch.manual_seed(0)
    ours = build_bert_for_pretraining(config)
    hf = transformers.BertForPreTraining(transformers.BertConfig(**config.to_hf_dict(), attn_implementation="sdpa"))
    g = torch.Generator().manual_seed(1)
    B, T, P = 8, 128, 20
    ids = torch.randint(1000, 30000, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[:, 100:] = 0  # padded rows: the masked attention both sides run on real batches
    segments = torch.zeros(B, T, dtype=torch.long)
    positions = torch.stack([torch.randperm(100, generator=g)[:P].sort().values for _ in range(B)])
    masked_ids = torch.gather(ids, 1, positions)
    nsp = torch.randint(0, 2, (B,), generator=g)
    hf_labels = torch.full((B, T), -100).scatter(1, positions, masked_ids)
    ours.train()
    hf.train()

    def ours_step():
        out = ours(input_ids=ids, input_mask=mask, segment_ids=segments, masked_lm_positions=positions,
                   masked_lm_ids=masked_ids, masked_lm_weights=torch.ones(B, P), next_sentence_labels=nsp)
        out["loss"].backward()

    def hf_step():
        hf(input_ids=ids, attention_mask=mask, token_type_ids=segments, labels=hf_labels,
           next_sentence_label=nsp).loss.backward()

    return ours_step, hf_step


def main() -> None:
    torch.set_num_threads(2)
    for name, steps in (("DETR-R50, every decoder layer's losses", detr_steps), ("BERT-base layers, pretraining", bert_steps)):
        ours_step, hf_step = steps()
        ours, theirs = count_ops(ours_step), count_ops(hf_step)
        print(json.dumps({"model": name, "ours": ours, "transformers": theirs,
                          "dispatched_ratio": round(ours["dispatched"] / theirs["dispatched"], 2),
                          "backward_ratio": round(ours["backward_nodes"] / theirs["backward_nodes"], 2)}))


if __name__ == "__main__":
    main()

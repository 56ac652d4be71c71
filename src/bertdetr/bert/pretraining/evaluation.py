"""Google's pretraining evaluation (``run_pretraining.py``'s ``metric_fn``): masked-LM accuracy and
loss over the masked positions' weights, next-sentence accuracy and loss, on held-out records; and
its ``eval_results.txt``. ``bertdetr bert pretrain`` runs it at the end (``--eval-files``) and every
``--eval-every`` steps."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from bertdetr.bert.model import BertForPreTraining
from bertdetr.bert.pretraining.dataset import iter_eval_batches
from bertdetr.bert.pretraining.roberta import DynamicMasking
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output, write_json


@torch.no_grad()
def evaluate(model: BertForPreTraining, files: list[str], batch_size: int, max_steps: int,
             device: torch.device | str = "cpu", bf16: bool = False, masking: DynamicMasking | None = None,
             seed: int = 0) -> dict[str, float]:
    """Google's pretraining metric_fn over at most ``max_steps`` batches of ``files``.

    masked_lm_accuracy = sum(w * [argmax == id]) / sum(w); masked_lm_loss = sum(w * nll) / sum(w);
    next_sentence_accuracy and next_sentence_loss are means over sequences. Also reports
    ``masked_lm_frequency_baseline``: the accuracy of always predicting the most common masked
    token of these records, the number to beat. Records without the next-sentence task report no
    next_sentence_*; unmasked records are masked by ``masking``, the same way each time (``seed``).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)  # correct_w, nll_w, w, nsp_correct, nsp_nll
    n_seq = 0
    counts: dict[int, float] = {}
    for i, batch in enumerate(iter_eval_batches(files, batch_size, model.config, masking, seed)):
        if i >= max_steps:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(**batch)
        logp = F.log_softmax(out["masked_lm_logits"].float(), dim=-1)
        ids, w = batch["masked_lm_ids"], batch["masked_lm_weights"].float()
        nll = -logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        correct = (logp.argmax(-1) == ids).float()
        nsp = batch.get("next_sentence_labels")
        nsp_correct = nsp_nll = w.new_zeros(())
        if nsp is not None:
            nsp_logp = F.log_softmax(out["next_sentence_logits"].float(), dim=-1)
            labels = nsp.reshape(-1)
            nsp_correct = (nsp_logp.argmax(-1) == labels).float().sum()
            nsp_nll = -nsp_logp.gather(-1, labels[:, None]).sum()
        sums += torch.stack([(correct * w).sum(), (nll * w).sum(), w.sum(), nsp_correct, nsp_nll]).double().cpu()
        n_seq += batch["input_ids"].shape[0]
        for token, weight in zip(ids[w > 0].tolist(), w[w > 0].tolist()):
            counts[token] = counts.get(token, 0.0) + weight
    model.train(was_training)
    if n_seq == 0:
        raise BertDetrError(f"no evaluation records in {', '.join(files)}")
    total_w = max(sums[2].item(), 1e-12)
    metrics = {"masked_lm_accuracy": sums[0].item() / total_w, "masked_lm_loss": sums[1].item() / total_w}
    if nsp is not None:
        metrics.update(next_sentence_accuracy=sums[3].item() / n_seq, next_sentence_loss=sums[4].item() / n_seq)
    return {**metrics, "masked_lm_frequency_baseline": max(counts.values(), default=0.0) / total_w,
            "eval_sequences": n_seq}


def write_eval_results(metrics: dict[str, float], output_dir: str, step: int) -> None:
    """Google's ``eval_results.txt`` (``key = value`` lines) and ``eval_metrics.json``."""
    write_json(os.path.join(output_dir, "eval_metrics.json"), {"global_step": step, **metrics}, indent=1)
    with atomic_output(os.path.join(output_dir, "eval_results.txt"), "w") as f:
        f.write(f"global_step = {step}\n")
        for key in sorted(metrics):
            f.write(f"{key} = {metrics[key]}\n")

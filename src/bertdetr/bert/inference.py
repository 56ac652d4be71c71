"""Using a pretrained BERT: fill in ``[MASK]`` tokens, and sentence vectors.

A model directory is the Hugging Face format ``pretrain`` exports (config.json, model.safetensors
or pytorch_model.bin, vocab.txt, tokenizer_config.json with ``do_lower_case``); Google-released or
HF-hub BERT checkpoints downloaded by the user load the same way.

Google's tokenizer has no special tokens in raw text (it splits "[MASK]" into "[", "mask", "]"),
so the text is split on the literal ``[MASK]`` first and the mask id is put between the pieces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from bertdetr.bert.model import BertForPreTraining
from bertdetr.bert.data.tokenization import FullTokenizer, tokenizer_json_vocab
from bertdetr.bert.weights import read_json_object, refuse_unhonoured_settings, saved_do_lower_case
from bertdetr.errors import BertDetrError

MASK = "[MASK]"


def _is_detr_folder(model_dir: str) -> bool:
    """Whether ``model_dir``'s config.json is a DETR's (ours: a ``bbox_head``; transformers': its
    ``model_type``), for the error that names it."""
    d = read_json_object(os.path.join(model_dir, "config.json"))
    return "bbox_head" in d or d.get("model_type") == "detr"


def load_tokenizer(model_dir: str | os.PathLike) -> FullTokenizer:
    """The FullTokenizer of a model directory (vocab.txt; do_lower_case from tokenizer_config.json,
    default True as Google's uncased models). A folder whose tokenizer transformers would run
    otherwise is refused (``refuse_unhonoured_settings``), rather than read with other tokens."""
    tokenizer = _read_tokenizer(os.fspath(model_dir))
    refuse_unhonoured_settings(os.fspath(model_dir), tokenizer)
    return tokenizer


def _read_tokenizer(model_dir: str) -> FullTokenizer:
    if not os.path.isdir(model_dir):
        raise BertDetrError(f"model directory not found: {model_dir}")
    vocab = os.path.join(model_dir, "vocab.txt")
    if not os.path.isfile(vocab) and os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
        # a folder as transformers 5 saves it: the vocabulary and casing in tokenizer.json
        vocab_map, lower = tokenizer_json_vocab(os.path.join(model_dir, "tokenizer.json"))
        return FullTokenizer.from_vocab(vocab_map, lower)
    if not os.path.isfile(vocab):
        exported = os.path.join(model_dir, "model")
        if os.path.isfile(os.path.join(exported, "vocab.txt")):
            # a pretraining run folder: its model is the export under model/
            raise BertDetrError(f"{model_dir} is a pretraining run folder; its model is {exported} (give that "
                                "folder)")
        if _is_detr_folder(model_dir):
            raise BertDetrError(f"{model_dir} holds a DETR checkpoint, not a BERT model (bertdetr.detr's "
                                "init_detector and pipeline read it)")
        raise BertDetrError(f"{model_dir} has no vocab.txt: a model directory needs its vocabulary")
    lower = saved_do_lower_case(model_dir)
    return FullTokenizer(vocab, do_lower_case=True if lower is None else lower)


def load_model(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[BertForPreTraining, FullTokenizer]:
    tokenizer = load_tokenizer(model_dir)
    model = BertForPreTraining.from_pretrained(model_dir).to(device).eval()
    if model.config.vocab_size != len(tokenizer.vocab):
        raise BertDetrError(f"{model_dir}: vocab.txt has {len(tokenizer.vocab)} entries, the model "
                            f"{model.config.vocab_size}")
    return model, tokenizer


def encode(tokenizer: FullTokenizer, text: str, max_seq_length: int) -> list[int]:
    """[CLS] pieces [SEP] as ids, keeping literal ``[MASK]``s as the mask token; truncated to fit."""
    pieces: list[str] = []
    for k, part in enumerate(text.split(MASK)):
        if k:
            pieces.append(MASK)
        pieces.extend(tokenizer.tokenize(part))
    pieces = pieces[: max_seq_length - 2]
    return tokenizer.convert_tokens_to_ids(["[CLS]", *pieces, "[SEP]"])


@dataclass
class MaskPrediction:
    position: int
    """Index of the [MASK] in the sequence ([CLS] is 0)."""
    tokens: list[str]
    """The top-k tokens, most probable first."""
    probs: list[float]
    """Their probabilities."""


@torch.no_grad()
def fill_mask(model: BertForPreTraining, tokenizer: FullTokenizer, text: str, top_k: int = 5) -> list[MaskPrediction]:
    """Top-k predictions for each ``[MASK]`` in ``text`` (each position on its own)."""
    if MASK not in text:
        raise BertDetrError(f"the text has no {MASK} to fill: {text!r}")
    device = next(model.parameters()).device
    ids = encode(tokenizer, text, model.config.max_position_embeddings)
    mask_id = tokenizer.vocab[MASK]
    positions = [i for i, t in enumerate(ids) if t == mask_id]
    if not positions:
        raise BertDetrError("every [MASK] was cut off: the text is longer than the model's max_position_embeddings")
    features = dict(input_ids=torch.tensor([ids]), input_mask=torch.ones(1, len(ids), dtype=torch.long),
                    segment_ids=torch.zeros(1, len(ids), dtype=torch.long),
                    masked_lm_positions=torch.tensor([positions]))
    model.check_inputs(**features)  # on the host: forward checks no values (the vocab may not fit the model)
    out = model(**{k: v.to(device) for k, v in features.items()})
    probs = out["masked_lm_logits"][0].float().softmax(-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [MaskPrediction(pos, tokenizer.convert_ids_to_tokens(top.indices[k].tolist()), top.values[k].tolist())
            for k, pos in enumerate(positions)]


@torch.no_grad()
def embed(model: BertForPreTraining, tokenizer: FullTokenizer, texts: Iterable[str], pooling: str = "mean",
          max_seq_length: int = 128, batch_size: int = 32) -> np.ndarray:
    """Sentence vectors [N, D]: ``mean`` of the last layer over real tokens ([CLS] and [SEP]
    included), or ``pooled`` (the NSP pooler's tanh(dense([CLS])), Google's get_pooled_output)."""
    if pooling not in ("mean", "pooled"):
        raise BertDetrError(f"pooling must be 'mean' or 'pooled', got {pooling!r}")
    max_seq_length = min(max_seq_length, model.config.max_position_embeddings)
    device = next(model.parameters()).device
    vectors = []
    batch: list[list[int]] = []

    def flush():
        T = max(len(x) for x in batch)
        ids = torch.zeros(len(batch), T, dtype=torch.long)
        mask = torch.zeros(len(batch), T, dtype=torch.long)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        model.bert.check_inputs(ids, attention_mask=mask)  # on the host: forward checks no values
        ids, mask = ids.to(device), mask.to(device)
        out = model.bert(ids, token_type_ids=torch.zeros_like(ids), attention_mask=mask)
        if pooling == "pooled":
            v = out.pooled_output
        else:
            m = mask.unsqueeze(-1).to(out.sequence_output.dtype)
            v = (out.sequence_output * m).sum(1) / m.sum(1)
        vectors.append(v.float().cpu().numpy())
        batch.clear()

    for text in texts:
        batch.append(encode(tokenizer, text, max_seq_length))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not vectors:
        raise BertDetrError("no texts to embed")
    return np.concatenate(vectors)

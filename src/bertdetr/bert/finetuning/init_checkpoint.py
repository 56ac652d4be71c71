"""What a fine-tuning run starts from, read from the flags or beside ``--init-checkpoint``: the
model's config and vocabulary (``model_files``, with Google's checks), the casing its tokenizer was
saved with (``resolve_do_lower_case``), its ``config.json`` and its weights (a HF-format directory or
a Google TF checkpoint prefix)."""

from __future__ import annotations

import dataclasses
import json
import os

import torch

from bertdetr.bert.data.tokenization import FullTokenizer, load_vocab, validate_case_matches_checkpoint
from bertdetr.bert.model import BertConfig
from bertdetr.bert.weights import (read_hf_weights, read_json_object, read_tf_checkpoint,
                                   refuse_unhonoured_settings, saved_do_lower_case)
from bertdetr.errors import BertDetrError
from bertdetr.training.folder import FINETUNE_CONFIGS


def model_files(bert_config_file: str | None, vocab_file: str | None, init_checkpoint: str | None,
                max_seq_length: int) -> tuple[BertConfig, str]:
    """The model's BertConfig and vocab file: the given files, else beside ``init_checkpoint`` (a
    directory's config.json and vocab.txt, or a TF checkpoint prefix's bert_config.json and
    vocab.txt); checked against each other and against ``max_seq_length`` (Google's check)."""
    beside = None
    if init_checkpoint:
        if not os.path.isdir(init_checkpoint) and not os.path.exists(init_checkpoint + ".index"):
            raise BertDetrError(f"--init-checkpoint {init_checkpoint} not found (a model directory, or a TF "
                                "checkpoint prefix with its .index file)")
        beside = init_checkpoint if os.path.isdir(init_checkpoint) else os.path.dirname(os.path.abspath(init_checkpoint))
    candidates = [bert_config_file] if bert_config_file else \
        [os.path.join(beside, n) for n in ("config.json", "bert_config.json")] if beside else []
    found = [c for c in candidates if os.path.isfile(c)]
    if not found and beside and os.path.isfile(os.path.join(beside, "model", "config.json")):
        raise BertDetrError(f"{beside} is a run folder; its model is {os.path.join(beside, 'model')} (give "
                            "--init-checkpoint that)")
    if not found:
        raise BertDetrError(f"no model config ({', '.join(candidates) or 'none given'}): give --bert-config-file, or "
                            "--init-checkpoint a directory with config.json")
    bert_config = BertConfig.from_json_file(found[0])
    if not vocab_file and beside:
        vocab_file = os.path.join(beside, "vocab.txt")
        if not os.path.isfile(vocab_file) and os.path.isfile(os.path.join(beside, "tokenizer.json")):
            vocab_file = os.path.join(beside, "tokenizer.json")  # a transformers 5 folder: no vocab.txt
    if not vocab_file or not os.path.isfile(vocab_file):
        raise BertDetrError(f"vocab file not found: {vocab_file or '(none given)'}: give --vocab-file")
    n = len(load_vocab(vocab_file))
    if n != bert_config.vocab_size:
        raise BertDetrError(f"vocab file {vocab_file} has {n} entries but the model's vocab_size is "
                            f"{bert_config.vocab_size}")
    if max_seq_length > bert_config.max_position_embeddings:
        raise BertDetrError(f"Cannot use sequence length {max_seq_length} because the BERT model was only "
                            f"trained up to sequence length {bert_config.max_position_embeddings}")
    return bert_config, vocab_file


def build_tokenizer(vocab_file: str, do_lower_case: bool, init_checkpoint: str | None) -> FullTokenizer:
    """Google's FullTokenizer over ``vocab_file``. Where that is the vocabulary beside an
    ``init_checkpoint`` directory, the folder's tokenizer settings this tokenizer cannot honour are
    refused (``refuse_unhonoured_settings``), as ``bert fill-mask`` and the pipelines refuse them:
    fine-tuning on other tokens than the model was pretrained on would fail without a word."""
    tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    if init_checkpoint and os.path.isdir(init_checkpoint) and \
            os.path.samefile(os.path.dirname(os.path.abspath(vocab_file)), init_checkpoint):
        refuse_unhonoured_settings(init_checkpoint, tokenizer)
    return tokenizer


def read_hf_config(directory: str | None) -> dict:
    """``config.json`` of a model directory ({} when there is none or it is no directory)."""
    path = os.path.join(directory, "config.json") if directory and os.path.isdir(directory) else None
    if path is None or not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError) as e:
        raise BertDetrError(f"cannot read {path}: {e}") from None
    return found if isinstance(found, dict) else {}


def read_init_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], str]:
    """The HF-named float32 tensors of ``--init-checkpoint`` (a HF-format directory, or a Google TF
    checkpoint prefix, which needs TensorFlow) and the file they came from."""
    if os.path.isdir(path):
        state, source = read_hf_weights(path)
    elif os.path.exists(path + ".index"):
        state, source = read_tf_checkpoint(path), path
    else:
        raise BertDetrError(f"--init-checkpoint {path}: neither a model directory nor a TF checkpoint prefix "
                            f"({path}.index not found)")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, source


def resolve_do_lower_case(do_lower_case: bool | None, init_checkpoint: str | None) -> bool:
    """The casing a fine-tuning run tokenizes with: ``do_lower_case`` as given, else as the
    ``init_checkpoint`` directory's tokenizer was saved (``saved_do_lower_case``: a cased model's
    folder says False), else True (Google's default, its uncased models). A given value that
    contradicts the folder's, or a Google checkpoint's name (its ``validate_case_matches_checkpoint``),
    is an error: text cased otherwise than in pretraining meets another vocabulary's pieces."""
    saved = saved_do_lower_case(init_checkpoint)
    if do_lower_case is None:
        do_lower_case = True if saved is None else saved
    elif saved is not None and saved != do_lower_case:
        raise BertDetrError(f"--do-lower-case={do_lower_case} but {init_checkpoint}'s tokenizer was saved with "
                            f"do_lower_case {saved}: leave the flag out to fine-tune as the model was pretrained")
    validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
    return do_lower_case


def resolve_start(config):
    """A fine-tuning config (``FinetuneConfig``'s fields) with what the run starts from settled: its
    casing (``resolve_do_lower_case``) and, evaluating or predicting with neither --init-checkpoint
    nor --bert-config-file, the model the run in ``output_dir`` exported (``model/``: its config,
    vocabulary and casing; the run's latest checkpoint, if any, is still what is evaluated), or,
    for a run stopped before its export, the model files its recorded config names."""
    init, bert_config_file, vocab_file = config.init_checkpoint, config.bert_config_file, config.vocab_file
    exported = os.path.join(config.output_dir, "model")
    if not (init or bert_config_file or config.do_train):
        if os.path.isfile(os.path.join(exported, "config.json")):
            init = exported
        else:
            recorded = _recorded_model_files(config.output_dir)
            init, bert_config_file = recorded.get("init_checkpoint"), recorded.get("bert_config_file")
            vocab_file = vocab_file or recorded.get("vocab_file")
    return dataclasses.replace(config, init_checkpoint=init, bert_config_file=bert_config_file, vocab_file=vocab_file,
                               do_lower_case=resolve_do_lower_case(config.do_lower_case, init))


def _recorded_model_files(output_dir: str) -> dict[str, str]:
    """``init_checkpoint``, ``bert_config_file`` and ``vocab_file`` as the fine-tuning run in
    ``output_dir`` recorded them (``<name>_config.json``), those that still exist ({} without one)."""
    for name in FINETUNE_CONFIGS.values():
        recorded = read_json_object(os.path.join(output_dir, name))
        if recorded:
            return {k: v for k in ("init_checkpoint", "bert_config_file", "vocab_file")
                    if isinstance(v := recorded.get(k), str) and (os.path.exists(v) or os.path.exists(v + ".index"))}
    return {}

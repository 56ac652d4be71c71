"""Google's TensorFlow checkpoints -> Hugging Face-format directories (``bertdetr bert convert``).

Google's releases (``bert_model.ckpt`` + ``bert_config.json`` + ``vocab.txt``) and the checkpoints its
``run_classifier.py`` and ``run_squad.py`` fine-tune are read (``weights.read_tf_checkpoint``, needs
TensorFlow), loaded into the model they hold (BERT with its pretraining heads, a sequence classifier
or a span head) and written as the directory transformers and every command here load. It sits
above the models and their heads, which it builds; the files are read and written by
``bertdetr.bert.weights``.
"""

from __future__ import annotations

import os
import shutil

import torch

from bertdetr.bert.heads import BertForQuestionAnswering, BertForSequenceClassification
from bertdetr.bert.model import (
    BertConfig,
    BertForPreTraining,
    BertModel,
    build_bert_for_pretraining,
    build_bert_model,
)
from bertdetr.bert.head_weights import (
    CLASSIFIER_WEIGHT,
    GOOGLE_SQUAD_NAMES,
    load_classifier_state,
    load_question_answering_state,
)
from bertdetr.bert.weights import WeightsError, from_hf_state_dict, load_state_into, read_tf_checkpoint


def convert_tf_checkpoint(checkpoint: str | os.PathLike, config_file: str | os.PathLike,
                          output_dir: str | os.PathLike, heads: bool = True) -> torch.nn.Module:
    """Google's ``bert_model.ckpt`` + ``bert_config.json`` -> a HF-format directory (which
    ``transformers`` and ``from_pretrained`` load); returns the model, in eval mode. A fine-tuned
    classifier or SQuAD checkpoint becomes a ``BertForSequenceClassification`` or
    ``BertForQuestionAnswering`` directory; otherwise ``BertForPreTraining`` (``BertModel`` without
    ``heads``). ``vocab.txt`` beside the checkpoint is copied.

    Raises ``WeightsError`` naming any variable that has no place in the model."""
    config = BertConfig.from_json_file(config_file)
    state = read_tf_checkpoint(checkpoint)
    source = os.fspath(checkpoint)
    if CLASSIFIER_WEIGHT in state:
        return convert_classifier_state(state, config, output_dir, source)
    if any(k in state for k in GOOGLE_SQUAD_NAMES):
        return convert_squad_state(state, config, output_dir, source)
    _, _, unexpected = from_hf_state_dict(state, config, heads=True)
    if unexpected:
        raise WeightsError(f"TF checkpoint {source} has variables this model has no place for "
                           f"(as HF names): {', '.join(unexpected)}")
    model: BertModel | BertForPreTraining = build_bert_for_pretraining(config) if heads else build_bert_model(config)
    load_state_into(model, state, source, heads=heads)
    return _save_converted(model, output_dir, source)


def convert_classifier_state(state: dict[str, torch.Tensor], config: BertConfig, output_dir: str | os.PathLike,
                             source: str) -> BertForSequenceClassification:
    """Google's fine-tuned ``run_classifier`` checkpoint (HF-named by ``read_tf_checkpoint``:
    ``bert/*`` and the top-level ``output_weights``/``output_bias``) -> a HF-format
    ``BertForSequenceClassification`` directory. Google's checkpoint has no label names: they are
    written as "0", "1", ... (the task's label list order)."""
    num_labels = state[CLASSIFIER_WEIGHT].shape[0]
    model = BertForSequenceClassification(build_bert_model(config), [str(i) for i in range(num_labels)])
    load_classifier_state(model, state, source)
    return _save_converted(model, output_dir, source)


def convert_squad_state(state: dict[str, torch.Tensor], config: BertConfig, output_dir: str | os.PathLike,
                        source: str) -> BertForQuestionAnswering:
    """Google's fine-tuned ``run_squad`` checkpoint (HF-named by ``read_tf_checkpoint``: ``bert.*``
    and ``cls.squad.*``) -> a HF-format ``BertForQuestionAnswering`` directory."""
    model = BertForQuestionAnswering(build_bert_model(config))
    load_question_answering_state(model, state, source)
    return _save_converted(model, output_dir, source)


def _save_converted(model, output_dir: str | os.PathLike, checkpoint: str):
    """A converted model in eval mode, written to ``output_dir`` with the ``vocab.txt`` found beside
    ``checkpoint`` (Google's releases keep it there)."""
    model.eval()
    model.save_pretrained(output_dir)
    vocab = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "vocab.txt")
    target = os.path.join(os.fspath(output_dir), "vocab.txt")
    # (converted into the checkpoint's own folder, the vocabulary is there already)
    if os.path.exists(vocab) and not (os.path.exists(target) and os.path.samefile(vocab, target)):
        shutil.copyfile(vocab, target)
    return model

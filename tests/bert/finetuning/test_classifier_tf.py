"""Google's fine-tuned run_classifier checkpoint (bert/* + output_weights/output_bias), written with
TensorFlow under Google's names: ``bert convert`` and ``classify --init-checkpoint`` read it.
Skipped where TensorFlow is not installed (CI does not install the ``tf`` extra)."""

import json
import os

import numpy as np
import pytest
import torch

from bertdetr.bert.finetuning.classifier import ClassifierConfig, run_classifier
from bertdetr.bert.heads import BertForSequenceClassification
from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
from bertdetr.cli import main

pytest.importorskip("tensorflow")
from tests.bert.test_model_tf import google_variables, write_tf_checkpoint  # noqa: E402

TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def test_google_tf_classifier_checkpoint_converts_and_initialises(tmp_path):
    """A run_classifier checkpoint written with TensorFlow under Google's names (skipped without TF)."""
    torch.manual_seed(11)
    config = BertConfig(**TINY)
    pre = build_bert_for_pretraining(config)
    variables = {k: v for k, v in google_variables(pre).items() if k.startswith("bert/")}
    w, b = np.random.default_rng(0).normal(size=(2, 32)).astype(np.float32), np.zeros(2, np.float32)
    variables.update({"output_weights": w, "output_bias": b, "global_step": np.int64(7),
                      "output_weights/adam_m": np.zeros_like(w)})
    write_tf_checkpoint(str(tmp_path / "model.ckpt"), variables)
    (tmp_path / "bert_config.json").write_text(json.dumps(config.to_google_dict()))
    assert main(["bert", "convert", "--tf-checkpoint", str(tmp_path / "model.ckpt"), "--output",
                 str(tmp_path / "hf")]) == 0
    converted = BertForSequenceClassification.from_pretrained(tmp_path / "hf")
    assert np.allclose(converted.output_weights.detach().numpy(), w)
    assert converted.labels == ["0", "1"]
    for name, t in pre.bert.state_dict().items():
        assert torch.equal(converted.bert.state_dict()[name], t), name
    glue = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert", "glue")
    summary = run_classifier(ClassifierConfig(
        task_name="mrpc", data_dir=os.path.join(glue, "MRPC"), output_dir=str(tmp_path / "out"),
        init_checkpoint=str(tmp_path / "model.ckpt"), bert_config_file=str(tmp_path / "bert_config.json"),
        vocab_file=os.path.join(glue, "..", "vocab-uncased.txt"), max_seq_length=64, do_eval=True, progress=False))
    assert summary["eval"]["num_examples"] == 4

"""What the Chinese fine-tuning tests share: the vocabulary of ``tests/data/bert/zh`` and a tiny
random BERT's config for it."""

import json
import os

import pytest

from bertdetr.bert.model import BertConfig

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
VOCAB_ZH = os.path.join(DATA, "zh", "vocab_zh.txt")
CLUENER = os.path.join(DATA, "zh", "cluener")
TINY_ZH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64)


@pytest.fixture(scope="session")
def zh_bert_config(tmp_path_factory):
    """bert_config.json of a tiny BERT (2 layers, hidden 32) over ``VOCAB_ZH``."""
    with open(VOCAB_ZH, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    path = tmp_path_factory.mktemp("cfg") / "bert_config.json"
    path.write_text(json.dumps(BertConfig(vocab_size=vocab_size, **TINY_ZH).to_google_dict()))
    return str(path)


def cluener_ner_args(out, bert_config, *extra) -> list[str]:
    """``bert ner`` on the bundled CLUENER-layout data with the tiny config, into ``out``."""
    return ["bert", "ner", "--data-dir", CLUENER, "--output-dir", str(out), "--vocab-file", VOCAB_ZH,
            "--bert-config-file", bert_config, "--max-seq-length", "32", "--no-progress", *extra]

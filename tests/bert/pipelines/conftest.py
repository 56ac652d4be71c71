"""The pipelines' tests' folders: tiny random models saved by transformers 5 (``tokenizer.json``,
no ``vocab.txt``), and transformers' pipelines on them; and a comparison of nested results up to
float rounding."""

import os

import pytest
import torch
import transformers

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
VOCAB = os.path.join(DATA, "vocab-uncased.txt")
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipelines")
    torch.manual_seed(0)
    cfg = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=128)
    tokenizer = transformers.BertTokenizer(VOCAB)
    made = {}
    for name, cls, extra in (
            ("fill-mask", transformers.BertForMaskedLM, {}),
            ("text-classification", transformers.BertForSequenceClassification,
             {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}),
            ("token-classification", transformers.BertForTokenClassification,
             {"id2label": {0: "O", 1: "B-PER", 2: "I-PER"}, "label2id": {"O": 0, "B-PER": 1, "I-PER": 2}}),
            ("question-answering", transformers.BertForQuestionAnswering, {})):
        model = cls(transformers.BertConfig(**cfg, **extra)).eval()
        if name == "token-classification":  # a head that tags: not all O
            with torch.no_grad():
                model.classifier.bias.copy_(torch.tensor([0.0, 0.05, 0.05]))
        model.save_pretrained(tmp / name)
        tokenizer.save_pretrained(tmp / name)
        made[name] = str(tmp / name)
    made["feature-extraction"] = made["fill-mask"]
    # NER with B-/I- labels of two types and one without a prefix, reading 32 positions (the
    # tokenizer told so too: transformers cuts and windows at its model_max_length), its head
    # scaled so that the labels vary along a sentence
    labels = dict(enumerate(NER_LABELS))
    model = transformers.BertForTokenClassification(transformers.BertConfig(
        **{**cfg, "max_position_embeddings": 32}, id2label=labels, label2id={v: k for k, v in labels.items()})).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(6.0)
    model.save_pretrained(tmp / "ner")
    transformers.BertTokenizer(VOCAB, model_max_length=32).save_pretrained(tmp / "ner")
    made["ner"] = str(tmp / "ner")
    return made


def hf_pipeline(task, folder):
    return transformers.pipeline(task, model=folder, device="cpu")


def close(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            close(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(float(b), rel=1e-4, abs=1e-6)
    else:
        assert a == b



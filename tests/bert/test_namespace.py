"""``from bertdetr.bert import ...``: the names a transformers user reaches for, and the flow the
package's docstring shows, against transformers on the same folder (Chinese text)."""

import importlib

import pytest
import torch

import bertdetr.bert as bert
from tests.conftest import DATA

transformers = pytest.importorskip("transformers")

VOCAB = DATA / "bert" / "zh" / "vocab_zh.txt"


def test_every_exported_name_is_its_modules():
    for name in bert.__all__:
        module = importlib.import_module(f"bertdetr.bert.{bert._EXPORTS[name]}")
        assert getattr(bert, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="has no attribute 'BertTokenizer'"):
        bert.BertTokenizer


def test_the_docstring_flow_equals_transformers(tmp_path):
    from bertdetr.bert.weights import export_model

    vocab_size = sum(1 for _ in open(VOCAB, encoding="utf-8"))
    config = bert.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=48, max_position_embeddings=64)
    torch.manual_seed(0)
    folder = export_model(bert.build_bert_model(config), tmp_path / "model", str(VOCAB), do_lower_case=True)
    model = bert.BertModel.from_pretrained(folder).eval()
    tokenizer = bert.load_tokenizer(folder)
    assert isinstance(tokenizer, bert.FullTokenizer)
    texts = ["今天天气很好", "张伟住在北京。"]
    ids = tokenizer.convert_tokens_to_ids(["[CLS]", *tokenizer.tokenize(texts[0]), "[SEP]"])
    assert len(ids) == 8 and 100 not in ids   # each character a token, none unknown
    ours = model(torch.tensor([ids]))
    theirs_model = transformers.BertModel.from_pretrained(folder).eval()
    hf_tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)
    inputs = hf_tokenizer(texts, padding=True, return_tensors="pt")
    assert inputs["input_ids"][0, :8].tolist() == ids
    with torch.no_grad():
        batch = model(**inputs)                      # transformers' keys are the forward's arguments
        expected = theirs_model(**inputs)
        one = ours.sequence_output
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(batch.sequence_output[real], expected.last_hidden_state[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.pooled_output, expected.pooler_output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one[0], batch.sequence_output[0, :8].detach(), atol=1e-5, rtol=1e-5)

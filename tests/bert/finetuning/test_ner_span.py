"""``bert ner --span`` (CLUENER2020's BERT+Span): its features, its model's losses and logits, and
its decoded spans against goldens of CLUENER's own code and of a checkpoint CLUENER's model saved
(``tests/data/bert/zh/cluener/make_clueners_span_model.py``), then the command end to end."""

import json
import os
import shutil
import warnings

import pytest
import torch

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning.ner_data import (bert_extract_item, get_span_labels, read_cluener, sentence_windows,
                                               span_tensors, spans_to_tags)
from bertdetr.bert.finetuning.ner_metrics import ner_metrics
from bertdetr.bert.heads import BertForTokenClassification, BertSpanForNer
from bertdetr.bert.model import BertConfig, build_bert_model
from bertdetr.bert.weights import WeightsError
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from tests.bert.finetuning.conftest import CLUENER, TINY_ZH, VOCAB_ZH
from tests.bert.finetuning.conftest import cluener_ner_args as _args

MODEL = os.path.join(CLUENER, "clueners_span_model")


@pytest.fixture(scope="module")
def golden():
    with open(os.path.join(CLUENER, "clueners_span_outputs.json"), encoding="utf-8") as f:
        return json.load(f)


def _clueners_model():
    with pytest.warns(UserWarning, match="CLUENER2020's BERT\\+Span checkpoint"):
        return BertSpanForNer.from_pretrained(MODEL)


def _dev(golden):
    sentences = read_cluener(os.path.join(CLUENER, "dev.json"))
    windows = sentence_windows(sentences, FullTokenizer(VOCAB_ZH, True), {}, golden["max_seq_length"])
    return sentences, windows, span_tensors(windows, sentences, golden["labels"], golden["max_seq_length"])


def test_features_are_clueners(golden):
    _, _, ours = _dev(golden)
    for key in ("input_ids", "input_mask", "start_ids", "end_ids"):
        assert torch.equal(ours[key], torch.tensor([f[key] for f in golden["features"]])), key


def test_clueners_checkpoint_gives_its_losses_logits_and_spans(golden):
    """Training mode (gold start labels to the end layer; the golden's dropout is 0) and eval mode
    (the softmax of the start logits) losses, the first row's logits, and every example's spans
    by bert_extract_item, as CLUENER's model gave them."""
    model = _clueners_model()
    assert model.labels == golden["labels"]
    sentences, windows, data = _dev(golden)
    batch = {k: data[k] for k in ("input_ids", "input_mask", "segment_ids", "start_ids", "end_ids")}
    with torch.no_grad():
        train_loss = model.train()(**batch)["loss"]
        out = model.eval()(**batch)
    torch.testing.assert_close(train_loss, torch.tensor(golden["train_loss"]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out["loss"], torch.tensor(golden["eval_loss"]), rtol=1e-6, atol=1e-6)
    n = len(golden["start_logits_row0"])
    torch.testing.assert_close(out["start_logits"][0, :n], torch.tensor(golden["start_logits_row0"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["end_logits"][0, :n], torch.tensor(golden["end_logits_row0"]), rtol=1e-5, atol=1e-5)
    starts, ends = out["start_logits"].argmax(-1), out["end_logits"].argmax(-1)
    for row, (w, spans) in enumerate(zip(windows, golden["spans"])):
        p = w.word_positions  # (CLUENER strips [CLS] and [SEP]: its word i is our position i + 1)
        assert [list(x) for x in bert_extract_item(starts[row, p].tolist(), ends[row, p].tolist())] == spans


def test_bert_ner_evaluates_clueners_checkpoint_as_its_spans_say(golden, tmp_path):
    labels = golden["labels"]
    sentences = read_cluener(os.path.join(CLUENER, "dev.json"))
    theirs = ner_metrics([s.tags for s in sentences],
                         [spans_to_tags(spans, len(s.words), labels) for s, spans in zip(sentences, golden["spans"])])
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="BERT\\+Span"):
        assert main(["bert", "ner", "--data-dir", CLUENER, "--output-dir", str(out), "--init-checkpoint", MODEL,
                     "--do-eval", "--max-seq-length", "64", "--no-progress"]) == 0
    ours = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    assert theirs["num_predicted"] > 0 and ours["num_predicted"] == theirs["num_predicted"]
    for key in ("precision", "recall", "f1"):
        assert ours[f"eval_{key}"] == pytest.approx(theirs[key], abs=1e-7)
    # the loss: batches of 8 averaged by windows here, CLUENER's golden one batch of all: close, not equal
    assert ours["eval_loss"] == pytest.approx(golden["eval_loss"], rel=1e-3)


def test_decoding_and_tags():
    assert bert_extract_item([0, 2, 0, 1, 0], [0, 0, 2, 0, 1]) == [(2, 1, 2), (1, 3, 4)]
    assert bert_extract_item([1, 1, 0], [0, 0, 0]) == []  # no end: no span
    assert bert_extract_item([1, 1, 0], [1, 0, 0]) == [(1, 0, 0)]  # the second start finds no end from it on
    assert spans_to_tags([(1, 0, 1), (2, 3, 3)], 5, ["O", "PER", "LOC"]) == ["B-PER", "I-PER", "O", "B-LOC", "O"]


def test_a_window_boundary_cuts_an_entity_into_its_parts():
    sentences = read_cluener(os.path.join(CLUENER, "dev.json"))[:3]
    labels = get_span_labels(sentences)
    windows = sentence_windows(sentences, FullTokenizer(VOCAB_ZH, True), {}, 6)  # 4 characters a window
    data = span_tensors(windows, sentences, labels, 6)
    for row, w in enumerate(windows):
        tags = sentences[w.sentence].tags[w.first_word:w.first_word + len(w.word_positions)]
        begins = [i for i, t in enumerate(tags) if t.startswith(("B-", "S-")) or (i == 0 and t != "O")]
        assert sorted(p - 1 for p in data["start_ids"][row].nonzero().flatten().tolist()) == begins


def test_ner_span_trains_evaluates_predicts_and_reads_back(zh_bert_config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(out, zh_bert_config, "--do-train", "--do-eval", "--do-predict", "--span", "--train-batch-size",
                      "16", "--num-train-epochs", "6", "--learning-rate", "1e-3")) == 0
    first = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    assert 0 < first["eval_f1"] <= 1 and first["cluener"]["macro_f1"] > 0
    model = BertSpanForNer.from_pretrained(out / "model")
    assert model.labels[0] == "O" and "name" in model.labels
    predicted = (out / "cluener_predict.json").read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the saved folder names its labels: no CLUENER warning
        assert main(_args(out, zh_bert_config, "--do-eval", "--do-predict")) == 0
    again = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    assert again["eval_f1"] == first["eval_f1"]
    assert (out / "cluener_predict.json").read_text(encoding="utf-8") == predicted
    other = tmp_path / "other"
    assert main(_args(other, zh_bert_config, "--do-eval", "--init-checkpoint", str(out / "model"))) == 0
    assert json.loads((other / "eval_metrics.json").read_text(encoding="utf-8"))["eval_f1"] == first["eval_f1"]
    # the pipeline reads token classifiers: a span folder says what to do
    shutil.copy(VOCAB_ZH, out / "model" / "vocab.txt")
    with pytest.raises(WeightsError, match="is a BertSpanForNer"):
        BertForTokenClassification.from_pretrained(out / "model")


def test_span_and_crf_together_is_an_error(zh_bert_config, tmp_path, capsys):
    assert main(_args(tmp_path / "out", zh_bert_config, "--do-train", "--span", "--crf")) == 2
    assert "--crf and --span are two heads" in capsys.readouterr().err
    with open(VOCAB_ZH, encoding="utf-8") as f:
        bert = build_bert_model(BertConfig(vocab_size=sum(1 for _ in f), **TINY_ZH))
    with pytest.raises(BertDetrError, match="O then the entity types"):
        BertSpanForNer(bert, ["name", "O"])


def test_the_span_head_and_its_loss_are_one_graph():
    with open(VOCAB_ZH, encoding="utf-8") as f:
        model = BertSpanForNer(build_bert_model(BertConfig(vocab_size=sum(1 for _ in f), **TINY_ZH)), ["O", "LOC", "PER"])
    g = torch.Generator().manual_seed(1)
    batch = dict(input_ids=torch.randint(5, 100, (2, 8), generator=g), input_mask=torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
                 start_ids=torch.randint(0, 3, (2, 8), generator=g), end_ids=torch.randint(0, 3, (2, 8), generator=g))
    for training in (True, False):
        explained = torch._dynamo.explain(model.train(training))(**batch)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


"""``bertdetr bert ner``: CoNLL reading, windows, the metrics against seqeval, the head against
transformers' ``BertForTokenClassification``, and the command end to end on the Chinese NER data
(``tests/data/bert/zh/ner``) with a tiny random BERT; bad input (exit 2, file and line named,
nothing written)."""

import json
import os
import shutil

import pytest
import seqeval.metrics
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning.ner import NerConfig, run_ner
from bertdetr.bert.finetuning.ner_data import IGNORE_INDEX, read_conll, sentence_windows
from bertdetr.bert.finetuning.ner_metrics import get_entities, ner_metrics
from bertdetr.bert.heads import BertForTokenClassification
from bertdetr.bert.model import BertConfig, build_bert_model
from bertdetr.cli import main
from bertdetr.errors import BertDetrError

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
NER = os.path.join(DATA, "zh", "ner")
VOCAB_ZH = os.path.join(DATA, "zh", "vocab_zh.txt")
VOCAB_EN = os.path.join(DATA, "vocab-uncased.txt")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)


def _vocab_size(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


@pytest.fixture(scope="module")
def bert_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "bert_config.json"
    path.write_text(json.dumps(BertConfig(vocab_size=_vocab_size(VOCAB_ZH), **TINY).to_google_dict()))
    return str(path)


def _args(data, out, bert_config, *extra):
    return ["bert", "ner", "--data-dir", str(data), "--output-dir", str(out), "--vocab-file", VOCAB_ZH,
            "--bert-config-file", bert_config, "--max-seq-length", "32", "--no-progress", *extra]


# --- metrics ----------------------------------------------------------------------------------------

TAGS = st.sampled_from(["O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "I-ORG"])
SENTENCES = st.lists(st.lists(TAGS, min_size=1, max_size=12), min_size=1, max_size=6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # seqeval's report averages empty rows
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_metrics_equal_seqeval_on_any_tag_sequences(data):
    """Well-formed or not (I- after O, E- alone, types switching mid-entity), BIO and BIOES mixed."""
    y_true = data.draw(SENTENCES)
    y_pred = [data.draw(st.lists(TAGS, min_size=len(s), max_size=len(s))) for s in y_true]
    ours = ner_metrics(y_true, y_pred)
    assert ours["precision"] == pytest.approx(seqeval.metrics.precision_score(y_true, y_pred, zero_division=0))
    assert ours["recall"] == pytest.approx(seqeval.metrics.recall_score(y_true, y_pred, zero_division=0))
    assert ours["f1"] == pytest.approx(seqeval.metrics.f1_score(y_true, y_pred, zero_division=0))
    assert ours["accuracy"] == pytest.approx(seqeval.metrics.accuracy_score(y_true, y_pred))
    report = seqeval.metrics.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for type_, row in ours["per_type"].items():
        assert row["precision"] == pytest.approx(report[type_]["precision"])
        assert row["recall"] == pytest.approx(report[type_]["recall"])
        assert row["f1"] == pytest.approx(report[type_]["f1-score"])
        assert row["support"] == report[type_]["support"]
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

    assert sorted(get_entities(y_true)) == sorted(seqeval_entities(y_true))


BMES = st.sampled_from(["O", "B-PER", "M-PER", "E-PER", "S-PER", "B-LOC", "M-LOC", "E-LOC", "S-LOC", "M-ORG"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_bmes_middles_count_as_seqeval_counts_inside_tags(data):
    """BMES (ResumeNER, OntoNotes 4): M- is read as I-, so the scores are seqeval's of the same
    tags with I- for M-."""
    y_true = data.draw(st.lists(st.lists(BMES, min_size=1, max_size=12), min_size=1, max_size=5))
    y_pred = [data.draw(st.lists(BMES, min_size=len(s), max_size=len(s))) for s in y_true]
    as_i = [[[t.replace("M-", "I-") for t in s] for s in y] for y in (y_true, y_pred)]
    ours = ner_metrics(y_true, y_pred)
    assert ours["f1"] == pytest.approx(seqeval.metrics.f1_score(*as_i, zero_division=0))
    assert ours["precision"] == pytest.approx(seqeval.metrics.precision_score(*as_i, zero_division=0))
    assert sorted(get_entities(y_true)) == sorted(get_entities(as_i[0]))
    assert get_entities(["B-PER", "M-PER", "M-PER", "E-PER", "S-LOC"]) == [("PER", 0, 3), ("LOC", 4, 4)]


# --- files ------------------------------------------------------------------------------------------

def test_conll_layouts(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                    "Peter\tB-PER\nBlackburn\tI-PER\n\n\n")
    sentences = read_conll(path)
    assert [(s.words, s.tags, s.line) for s in sentences] == [
        (["EU", "rejects"], ["B-ORG", "O"], 3), (["Peter", "Blackburn"], ["B-PER", "I-PER"], 6)]
    test = tmp_path / "test.txt"
    test.write_text("张\n伟\n\n去\n")
    assert [(s.words, s.tags) for s in read_conll(test, tags_required=False)] == [(["张", "伟"], None), (["去"], None)]
    bmes = tmp_path / "resume.txt"  # ResumeNER's BMES layout
    bmes.write_text("高 B-NAME\n勇 E-NAME\n，\tO\n中 B-CONT\n国 M-CONT\n国 M-CONT\n籍 E-CONT\n")
    assert read_conll(bmes)[0].tags[3:] == ["B-CONT", "M-CONT", "M-CONT", "E-CONT"]


@pytest.mark.parametrize("text, line, message", [
    ("张 B-PER\n伟\n", 2, "has no tag"),
    ("张 B-PER\n伟 X-PER\n", 2, "not of the BIO, BIOES or BMES scheme"),
    ("张 PER\n", 1, "not of the BIO, BIOES or BMES scheme"),
    ("张 B-\n", 1, "not of the BIO, BIOES or BMES scheme"),
])
def test_bad_conll_lines_are_named(tmp_path, text, line, message):
    path = tmp_path / "train.txt"
    path.write_text(text)
    with pytest.raises(BertDetrError, match=f"train.txt, line {line}: .*{message}"):
        read_conll(path)


def test_a_gbk_file_is_named_as_not_utf8_not_as_a_line_without_tag(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes("张 B-PER\n伟 I-PER\n在 O\n".encode("gbk"))
    with pytest.raises(BertDetrError, match=r"train.txt is not UTF-8 text: .*\(first on line 1\).*iconv -f GBK"):
        read_conll(path)


@pytest.mark.parametrize("space", ["\u3000", "\u00a0"])
def test_a_unicode_space_is_a_token_read_as_unk_and_aligned(tmp_path, space):
    path = tmp_path / "train.txt"
    path.write_text(f"张 B-PER\n伟\tI-PER\n{space} O\n去 O\r\n北 B-LOC  \n \n京 B-LOC\n")
    first, second = read_conll(path)
    assert (first.words, first.tags) == (["张", "伟", space, "去", "北"], ["B-PER", "I-PER", "O", "O", "B-LOC"])
    assert second.words == ["京"]  # a line of ASCII spaces is blank
    tokenizer = FullTokenizer(VOCAB_ZH)
    assert tokenizer.tokenize(space) == []  # no pieces of its own: it gets [UNK]
    label_map = {"B-LOC": 0, "B-PER": 1, "I-PER": 2, "O": 3}
    [window] = sentence_windows([first], tokenizer, label_map, 32)
    assert [window.input_ids[p] for p in window.word_positions] == tokenizer.convert_tokens_to_ids(
        ["张", "伟", "[UNK]", "去", "北"])
    assert [window.label_ids[p] for p in window.word_positions] == [1, 2, 3, 3, 0]


def test_a_full_width_space_token_gets_its_prediction_written(bert_config, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("张 B-PER\n伟 I-PER\n\u3000 O\n去 O\n北 B-LOC\n京 I-LOC\n\n" * 4)
    (data / "test.txt").write_text("张\n\u3000\n京\n\n去\n")
    out = tmp_path / "out"
    assert main(_args(data, out, bert_config, "--do-train", "--do-predict", "--train-batch-size", "2",
                      "--num-train-epochs", "1")) == 0
    lines = (out / "test_predictions.txt").read_text(encoding="utf-8").split("\n")
    rows = [line.split(" ") for line in lines if line]
    assert [r[0] for r in rows] == ["张", "\u3000", "京", "去"]
    assert all(len(r) == 2 and r[1] for r in rows)  # every token, the space too, has its predicted tag
    assert [s.words for s in read_conll(out / "test_predictions.txt")] == [["张", "\u3000", "京"], ["去"]]


def test_a_test_file_is_tagged_everywhere_or_nowhere(tmp_path):
    path = tmp_path / "test.txt"
    path.write_text("张\n伟 I-PER\n")
    with pytest.raises(BertDetrError, match="test.txt, line 2: a token and a tag"):
        read_conll(path, tags_required=False)


def test_windows_cover_every_word_once_with_the_label_on_its_first_piece(tmp_path):
    tokenizer = FullTokenizer(VOCAB_EN)
    words = ["Unaffable", "tokenization", "of", "Johanson", "\x00", "in", "Washington"] * 6
    tags = ["B-PER", "I-PER", "O", "B-PER", "O", "O", "B-LOC"] * 6
    path = tmp_path / "train.txt"
    path.write_text("".join(f"{w} {t}\n" for w, t in zip(words, tags) if w != "\x00"))
    from bertdetr.bert.finetuning.ner_data import Sentence

    label_map = {"B-LOC": 0, "B-PER": 1, "I-PER": 2, "O": 3}
    windows = sentence_windows([Sentence(words, tags, 1)], tokenizer, label_map, 16)
    assert len(windows) > 3
    covered = []
    for w in windows:
        assert len(w.input_ids) <= 16 and w.input_ids[0] == tokenizer.vocab["[CLS]"]
        assert w.input_ids[-1] == tokenizer.vocab["[SEP]"]
        for k, position in enumerate(w.word_positions):
            word = w.first_word + k
            covered.append(word)
            assert w.label_ids[position] == label_map[tags[word]]
            pieces = tokenizer.tokenize(words[word]) or ["[UNK]"]  # a word of no pieces still gets one
            assert w.input_ids[position] == tokenizer.vocab[pieces[0]]
        assert sum(label != IGNORE_INDEX for label in w.label_ids) == len(w.word_positions)
    assert covered == list(range(len(words)))


# --- the head against transformers -------------------------------------------------------------------

def test_token_classifier_loads_both_ways_with_equal_logits_and_loss(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=_vocab_size(VOCAB_ZH), **TINY)
    ours = BertForTokenClassification(build_bert_model(config), ["B-LOC", "I-LOC", "O"]).eval()
    ours.save_pretrained(tmp_path / "ours")
    theirs = transformers.BertForTokenClassification.from_pretrained(tmp_path / "ours").eval()
    assert theirs.config.id2label == {0: "B-LOC", 1: "I-LOC", 2: "O"}
    ids = torch.randint(5, config.vocab_size, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = torch.randint(0, 3, (3, 11))
    labels[:, 0] = IGNORE_INDEX
    labels[1, 7:] = IGNORE_INDEX
    a = ours(input_ids=ids, input_mask=mask, label_ids=labels)
    b = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(a["logits"], b.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["loss"], b.loss, atol=1e-6, rtol=1e-6)

    theirs.save_pretrained(tmp_path / "theirs")
    back = BertForTokenClassification.from_pretrained(tmp_path / "theirs").eval()
    assert back.labels == ["B-LOC", "I-LOC", "O"]
    torch.testing.assert_close(back(input_ids=ids, input_mask=mask)["logits"], b.logits, atol=1e-5, rtol=1e-5)
    # a sentence classifier's classifier.* is not taken for a token head
    transformers.BertForSequenceClassification(theirs.config).save_pretrained(tmp_path / "sentence")
    with pytest.raises(BertDetrError, match="not a BertForTokenClassification"):
        BertForTokenClassification.from_pretrained(tmp_path / "sentence")


# --- the command ----------------------------------------------------------------------------------------

def _predictions(path):
    gold, pred, sentence_gold, sentence_pred = [], [], [], []
    for line in open(path, encoding="utf-8"):
        parts = line.split()
        if not parts:
            gold.append(sentence_gold)
            pred.append(sentence_pred)
            sentence_gold, sentence_pred = [], []
            continue
        sentence_gold.append(parts[1])
        sentence_pred.append(parts[-1])
    return gold, pred


def test_ner_trains_evaluates_predicts_and_exports(bert_config, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.txt", "dev.txt"):
        shutil.copy(os.path.join(NER, name), data / name)
    shutil.copy(os.path.join(NER, "dev.txt"), data / "test.txt")  # the dev set again: predictions with gold tags
    out = tmp_path / "out"
    assert main(_args(data, out, bert_config, "--do-train", "--do-eval", "--do-predict", "--train-batch-size", "16",
                      "--learning-rate", "2e-3", "--num-train-epochs", "3", "--save-checkpoints-steps", "1000")) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text())
    gold, pred = _predictions(out / "test_predictions.txt")
    assert gold == [s.tags for s in read_conll(data / "dev.txt")]
    # the written metrics are seqeval's on the written predictions
    assert metrics["eval_f1"] == pytest.approx(seqeval.metrics.f1_score(gold, pred))
    assert metrics["eval_precision"] == pytest.approx(seqeval.metrics.precision_score(gold, pred))
    assert metrics["eval_recall"] == pytest.approx(seqeval.metrics.recall_score(gold, pred))
    assert set(metrics["per_type"]) == {"LOC", "ORG", "PER"}
    assert metrics["eval_f1"] > 0.5  # it learned: a random head finds almost no entity
    assert metrics["global_step"] == 75  # int(400 windows / 16 * 3 epochs)
    lines = (out / "eval_results.txt").read_text().splitlines()
    assert [line.split(" = ")[0] for line in lines] == ["eval_accuracy", "eval_f1", "eval_loss", "eval_precision",
                                                         "eval_recall", "global_step"]

    # the exported model is a transformers BertForTokenClassification with equal logits
    model_dir = out / "model"
    theirs = transformers.BertForTokenClassification.from_pretrained(model_dir).eval()
    ours = BertForTokenClassification.from_pretrained(model_dir).eval()
    assert list(theirs.config.id2label.values()) == ours.labels == json.loads(
        (out / "ner_config.json").read_text())["labels"]
    ids = torch.randint(5, 100, (2, 9))
    torch.testing.assert_close(ours(input_ids=ids)["logits"], theirs(input_ids=ids).logits, atol=1e-5, rtol=1e-5)

    # evaluating the exported model again (no training) gives the same metrics
    again = tmp_path / "again"
    assert main(["bert", "ner", "--data-dir", str(data), "--output-dir", str(again), "--init-checkpoint",
                 str(model_dir), "--max-seq-length", "32", "--do-eval", "--no-progress"]) == 0
    assert json.loads((again / "eval_metrics.json").read_text())["eval_f1"] == pytest.approx(metrics["eval_f1"])


def test_bioes_tags_and_test_files_without_gold(bert_config, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sentences = read_conll(os.path.join(NER, "train.txt"))[:60]

    def bioes(tags):
        out = []
        for i, tag in enumerate(tags):
            nxt = tags[i + 1] if i + 1 < len(tags) else "O"
            ends = not nxt.startswith("I-")
            if tag.startswith("B-"):
                out.append(("S-" if ends else "B-") + tag[2:])
            elif tag.startswith("I-"):
                out.append(("E-" if ends else "I-") + tag[2:])
            else:
                out.append(tag)
        return out

    with open(data / "train.txt", "w") as f:
        for s in sentences:
            f.writelines(f"{w}\t{t}\n" for w, t in zip(s.words, bioes(s.tags)))
            f.write("\n")
    with open(data / "test.txt", "w") as f:
        for s in sentences[:5]:
            f.writelines(f"{w}\n" for w in s.words)
            f.write("\n")
    out = tmp_path / "out"
    assert main(_args(data, out, bert_config, "--do-train", "--do-predict", "--train-batch-size", "8",
                      "--num-train-epochs", "1")) == 0
    labels = json.loads((out / "ner_config.json").read_text())["labels"]
    assert {"E-PER", "B-PER"} <= set(labels)
    lines = [line.split() for line in (out / "test_predictions.txt").read_text().splitlines()]
    assert sum(not parts for parts in lines) == 5
    assert all(len(parts) == 2 and parts[1] in labels for parts in lines if parts)


@pytest.mark.parametrize("name, text, message", [
    ("train.txt", "张 B-PER\n伟\n", "train.txt, line 2: '伟' has no tag"),
    ("dev.txt", "张 B-PER\n伟 X-PER\n", "dev.txt, line 2: tag 'X-PER' is not of the BIO, BIOES or BMES scheme"),
])
def test_bad_input_exits_2_naming_file_and_line_and_writes_nothing(bert_config, tmp_path, capsys, name, text, message):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(os.path.join(NER, "train.txt"), data / "train.txt")
    shutil.copy(os.path.join(NER, "dev.txt"), data / "dev.txt")
    (data / name).write_text(text)
    out = tmp_path / "out"
    assert main(_args(data, out, bert_config, "--do-train", "--do-eval")) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: ") and message in err
    assert not out.exists() or not os.listdir(out)


def test_dev_and_test_types_unknown_to_training_are_named(bert_config, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("张 B-PER\n伟 I-PER\n去 O\n北 B-LOC\n京 I-LOC\n")
    (data / "dev.txt").write_text("张 B-PER\n伟 E-PER\n去 O\n北 B-ORGX\n京 M-ORGX\n")
    (data / "test.txt").write_text("北 B-LOC\n京 I-LOC\n在 S-TIME\n")
    with pytest.warns(UserWarning) as caught:
        assert main(_args(data, tmp_path / "out", bert_config, "--do-train", "--do-eval", "--do-predict",
                          "--features-only")) == 0
    messages = [str(w.message) for w in caught if "not in the training data" in str(w.message)]
    assert len(messages) == 2
    assert "dev.txt: entity type(s) ORGX not in the training data" in messages[0]
    assert "test.txt: entity type(s) TIME not in the training data" in messages[1]


def test_missing_files_and_labels(bert_config, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(os.path.join(NER, "dev.txt"), data / "dev.txt")
    assert main(_args(data, tmp_path / "out", bert_config, "--do-train")) == 2
    assert "train.txt not found" in capsys.readouterr().err
    assert main(_args(data, tmp_path / "out", bert_config, "--do-eval")) == 2
    assert "tags come from the fine-tuned model" in capsys.readouterr().err


def test_resumener_file_names_are_read_as_conll(bert_config, tmp_path, capsys):
    """ResumeNER's (and OntoNotes 4's, MSRA's) train.char.bmes, dev.char.bmes, test.char.bmes."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "dev", "test"):
        shutil.copy(os.path.join(NER, f"{name}.txt"), data / f"{name}.char.bmes")
    assert main(_args(data, tmp_path / "bmes", bert_config, "--do-train", "--do-eval", "--do-predict",
                      "--features-only")) == 0
    assert main(_args(NER, tmp_path / "txt", bert_config, "--do-train", "--do-eval", "--do-predict",
                      "--features-only")) == 0
    for name in ("train", "eval", "predict"):
        assert (tmp_path / "bmes" / f"{name}.tf_record").read_bytes() == (tmp_path / "txt" / f"{name}.tf_record").read_bytes()
    (data / "dev.char.bmes").unlink()
    assert main(_args(data, tmp_path / "out", bert_config, "--do-eval")) == 2
    assert "--do-eval reads dev.txt or dev.char.bmes" in capsys.readouterr().err


def test_stop_and_resume_equals_an_uninterrupted_run(bert_config, tmp_path):
    def config(out, **kw):
        return NerConfig(data_dir=NER, output_dir=str(out), vocab_file=VOCAB_ZH, bert_config_file=bert_config,
                         max_seq_length=32, do_train=True, train_batch_size=32, num_train_epochs=1,
                         learning_rate=1e-3, save_checkpoints_steps=4, progress=False, **kw)

    run_ner(config(tmp_path / "whole"))
    run_ner(config(tmp_path / "parts", stop_at_step=5))
    assert not (tmp_path / "parts" / "model").exists()
    run_ner(config(tmp_path / "parts", resume=True))
    a = BertForTokenClassification.from_pretrained(tmp_path / "whole" / "model").state_dict()
    b = BertForTokenClassification.from_pretrained(tmp_path / "parts" / "model").state_dict()
    for k in a:
        if "pooler" not in k:  # not saved (transformers' token classifier has none): each load draws its own
            torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)

"""Chinese reading comprehension with ``bert squad``: CMRC 2018 / DRCD files (SQuAD layout, contexts
without spaces), answers as character spans, predictions without spaces between CJK characters,
and ``--metric cmrc2018`` equal to the official CMRC 2018 evaluation (its outputs on the cases of
``tests/data/bert/cmrc/make_cmrc_goldens.py``)."""

import json
import os
import re

import pytest

from bertdetr.bert.finetuning import cmrc_metrics
from bertdetr.bert.finetuning.squad_data import _words, join_doc_tokens, load_squad_file
from bertdetr.bert.model import BertConfig
from bertdetr.cli import main

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
CMRC = os.path.join(DATA, "cmrc")
TRAIN = os.path.join(CMRC, "cmrc_sample_train.json")
DEV = os.path.join(CMRC, "cmrc_sample_dev.json")
VOCAB_ZH = os.path.join(DATA, "zh", "vocab_zh.txt")
GOLDEN = json.load(open(os.path.join(CMRC, "cmrc_golden.json"), encoding="utf-8"))
CJK_SPACE_CJK = re.compile(r"[\u4e00-\u9fff]\s+[\u4e00-\u9fff]")


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["prediction"] or "empty")
def test_scores_equal_the_official_script(case):
    assert cmrc_metrics.mixed_segmentation(case["prediction"], rm_punc=True) == case["segments"]
    assert cmrc_metrics.calc_f1_score(case["answers"], case["prediction"]) == pytest.approx(case["f1"], abs=1e-12)
    assert cmrc_metrics.calc_em_score(case["answers"], case["prediction"]) == case["em"]


def test_evaluate_equals_the_official_script():
    ours = cmrc_metrics.evaluate(GOLDEN["dataset"], GOLDEN["predictions"])
    theirs = GOLDEN["evaluate"]
    assert ours["F1"] == pytest.approx(theirs["F1"], abs=1e-9)
    assert ours["EM"] == pytest.approx(theirs["EM"], abs=1e-9)
    assert (ours["TOTAL"], ours["SKIP"]) == (theirs["TOTAL"], theirs["SKIP"])
    assert ours["AVERAGE"] == pytest.approx((theirs["EM"] + theirs["F1"]) / 2)


def test_cjk_characters_are_words_and_texts_gain_no_spaces():
    words, starts, glued = _words("他在北京 大学读书，学Python 3。")
    # punctuation stays with its non-CJK neighbours, as Google's words keep "Smith's" whole
    assert words == ["他", "在", "北", "京", "大", "学", "读", "书", "，", "学", "Python", "3。"]
    assert [starts[i] for i in (4, 10, 11)] == [5, 11, 18]
    assert join_doc_tokens(words, glued, 0, len(words) - 1) == "他在北京 大学读书，学Python 3。"
    # text without CJK characters is split as Google's (whitespace only), never glued
    assert _words("Steve  Smith's 2nd,year") == (["Steve", "Smith's", "2nd,year"], [0, 7, 15], frozenset())


def test_training_answers_are_character_spans_of_the_context():
    squad = load_squad_file(TRAIN, is_training=True)
    assert not squad.skipped and len(squad.examples) == 18
    for example in squad.examples:
        text = join_doc_tokens(example.doc_tokens, example.glued, example.start_position, example.end_position)
        assert text == example.orig_answer_text


def test_an_answer_nowhere_in_its_context_is_named_with_its_line(tmp_path, capsys):
    data = json.load(open(TRAIN, encoding="utf-8"))
    data["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = "不存在的答案"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    qid = data["data"][1]["paragraphs"][0]["qas"][0]["id"]
    line = next(n for n, text in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1) if f'"{qid}"' in text)
    assert main(["bert", "squad", "--do-train", "--train-file", str(bad), "--output-dir", str(tmp_path / "out"),
                 "--vocab-file", VOCAB_ZH, "--bert-config-file", _config(tmp_path), "--max-seq-length", "128",
                 "--doc-stride", "32", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line {line}: data[1].paragraphs[0].qas[0] (id '{qid}'): answer '不存在的答案' is nowhere" in err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def _config(tmp_path):
    path = tmp_path / "bert_config.json"
    with open(VOCAB_ZH, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    path.write_text(json.dumps(BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, intermediate_size=64,
                                          max_position_embeddings=128).to_google_dict()))
    return str(path)


def test_squad_on_cmrc_predicts_spans_and_scores_with_the_cmrc_metric(tmp_path):
    out = tmp_path / "out"
    assert main(["bert", "squad", "--do-train", "--train-file", TRAIN, "--do-predict", "--predict-file", DEV,
                 "--output-dir", str(out), "--vocab-file", VOCAB_ZH, "--bert-config-file", _config(tmp_path),
                 "--max-seq-length", "128", "--doc-stride", "64", "--max-query-length", "24",
                 "--train-batch-size", "4", "--num-train-epochs", "2", "--learning-rate", "1e-3",
                 "--metric", "cmrc2018", "--no-progress"]) == 0
    predictions = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    dev = json.load(open(DEV, encoding="utf-8"))["data"]
    contexts = {qa["id"]: p["context"] for a in dev for p in a["paragraphs"] for qa in p["qas"]}
    assert set(predictions) == set(contexts)
    for qid, text in predictions.items():
        assert text and text in contexts[qid]  # a character span of its context
        assert not CJK_SPACE_CJK.search(text)
    nbest = json.loads((out / "nbest_predictions.json").read_text(encoding="utf-8"))
    assert all(e["text"] in contexts[qid] for qid, entries in nbest.items() for e in entries)
    metrics = json.loads((out / "eval_metrics.json").read_text())
    expected = cmrc_metrics.evaluate(dev, predictions)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert metrics["metric"] == "cmrc2018" and metrics["TOTAL"] == 8 and metrics["SKIP"] == 0


def test_unanswerable_questions_are_scored_and_an_unscorable_set_is_said(tmp_path, capsys):
    """--version-2-with-negative --metric cmrc2018: a question without answers is right when nothing
    is predicted (SQuAD 2.0's rule; CMRC's script has none and failed on max() of nothing). In a 1.1
    file such a question leaves the set unscored: said, naming it, and an earlier prediction's
    eval_metrics.json in the folder is removed rather than left beside the new predictions."""
    assert cmrc_metrics.evaluate([{"paragraphs": [{"qas": [{"id": "a", "answers": []}, {"id": "b", "answers": []}]}]}],
                                 {"a": "", "b": "北京"}) == {"AVERAGE": 50.0, "F1": 50.0, "EM": 50.0, "TOTAL": 2,
                                                            "SKIP": 0}
    data = json.load(open(DEV, encoding="utf-8"))
    qas = data["data"][0]["paragraphs"][0]["qas"]
    qas.append({"id": "neg", "question": "王阿姨养了几只猫？", "answers": [], "is_impossible": True})
    dev = tmp_path / "v2.json"
    dev.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    common = ["bert", "squad", "--do-predict", "--predict-file", str(dev), "--output-dir", str(out), "--vocab-file",
              VOCAB_ZH, "--bert-config-file", _config(tmp_path), "--max-seq-length", "64", "--doc-stride", "32",
              "--max-query-length", "24", "--metric", "cmrc2018", "--no-progress"]
    assert main([*common, "--version-2-with-negative"]) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["TOTAL"] == 9 and metrics["SKIP"] == 0
    capsys.readouterr()
    del qas[-1]["is_impossible"]  # (with it, a 1.1 run refuses the file as SQuAD 2.0's)
    dev.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert main([*common, "--overwrite"]) == 0
    said = capsys.readouterr().out
    assert "not scored: " in said and "1 of its 9 questions have no answers (the first: 'neg')" in said
    assert "--version-2-with-negative" in said and "eval_metrics.json of an earlier prediction removed" in said
    assert not (out / "eval_metrics.json").exists() and (out / "predictions.json").exists()

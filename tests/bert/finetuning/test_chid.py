"""``bertdetr bert multiple-choice --task chid`` (the idiom cloze): examples, features and the
decoding of answers equal to those of CLUE's own ``CHID_preprocess.py`` (``tests/data/bert/chid/
golden``), the command end to end with a tiny random BERT, and bad input named."""

import json
import os
import shutil

import numpy as np
import pytest

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning.chid_data import (add_tokens_for_around, chid_files, convert_examples_to_features,
                                                evaluate, get_final_predictions, read_chid_examples)
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from tests.bert.finetuning.conftest import VOCAB_ZH

CHID = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert", "chid")


def _golden(name):
    with open(os.path.join(CHID, "golden", name), encoding="utf-8") as f:
        return [json.loads(line) for line in f] if name.endswith(".jsonl") else json.load(f)


def _args(data, out, bert_config, *extra):
    return ["bert", "multiple-choice", "--task", "chid", "--data-dir", str(data), "--output-dir", str(out),
            "--vocab-file", VOCAB_ZH, "--bert-config-file", bert_config, "--max-seq-length", "32", "--no-progress",
            *extra]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
@pytest.mark.parametrize("length", [32, 64])
def test_examples_and_features_equal_clues_chid_preprocess(split, length):
    tokenizer = FullTokenizer(VOCAB_ZH, do_lower_case=True)
    examples = read_chid_examples(*chid_files(CHID, split))
    golden = _golden(f"{split}-{length}.jsonl")
    assert [(e.example_id, e.tag, e.doc_tokens, e.options, e.answer_index) for e in examples] == [
        (g["example_id"], g["tag"], g["doc_tokens"], g["options"], g["label"]) for g in golden]
    data = convert_examples_to_features(examples, tokenizer, length, 10)
    for n, g in enumerate(golden):
        assert data["input_ids"][n].tolist() == g["input_ids"], (split, g["tag"])
        assert data["input_mask"][n].tolist() == g["input_masks"]
        assert data["segment_ids"][n].tolist() == g["segment_ids"]
        assert (data["input_mask"][n].sum(-1) > 0).int().tolist() == g["choice_masks"]
        assert int(data["label_ids"][n]) == (g["label"] or 0)


def test_decoding_gives_each_candidate_once_as_clues():
    golden = _golden("decode.json")
    examples = read_chid_examples(*chid_files(CHID, "train"))
    predictions = get_final_predictions(examples, np.asarray(golden["logits"]))
    assert predictions == golden["predictions"]
    answers = {e.tag: e.answer_index for e in examples}
    assert evaluate(answers, predictions) * 100 == pytest.approx(golden["accuracy_percent"])
    with pytest.raises(BertDetrError, match="no prediction for 1 blanks"):
        evaluate({**answers, "#idiom999999#": 0}, predictions)


def test_window_quirk_of_short_passages_is_clues():
    tokens = [str(i) for i in range(40)]
    left, right = add_tokens_for_around(tokens, 30, 56)  # blank past the middle of a passage shorter than 56
    assert right == tokens[31:] and left == tokens[23:30]  # CLUE's slice start 30 - 47 = -17 counts from the end
    assert add_tokens_for_around(tokens, 5, 10) == (tokens[0:5], tokens[6:11])
    assert add_tokens_for_around(tokens, 20, 10) == (tokens[15:20], tokens[21:26])


def test_chid_trains_evaluates_and_writes_clues_answers(zh_bert_config, tmp_path):
    out = tmp_path / "out"
    assert main(_args(CHID, out, zh_bert_config, "--do-train", "--do-eval", "--do-predict", "--train-batch-size", "2",
                      "--num-train-epochs", "2", "--learning-rate", "1e-3")) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["task"] == "chid" and metrics["num_choices"] == 10 and metrics["num_examples"] == 3
    dev = json.loads((out / "dev_predictions.json").read_text())
    answers = json.loads(open(os.path.join(CHID, "dev_answer.json")).read())
    assert sorted(dev) == sorted(answers)
    assert metrics["eval_accuracy"] == pytest.approx(sum(dev[t] == a for t, a in answers.items()) / 3)
    assert dev["#idiom000006#"] != dev["#idiom000007#"]  # one line's candidates are given out once
    assert json.loads((out / "test_predictions.json").read_text()).keys() == {"#idiom000008#"}
    assert np.loadtxt(out / "test_results.tsv", delimiter="\t").shape == (10,)


def test_bad_input_is_named(zh_bert_config, tmp_path, capsys):
    data = tmp_path / "chid"
    shutil.copytree(CHID, data)
    (data / "dev_answer.json").write_text('{"#idiom000005#": 1}')
    assert main(_args(data, tmp_path / "out", zh_bert_config, "--do-eval", "--features-only")) == 2
    assert "blank #idiom000006#: " in capsys.readouterr().err
    os.remove(data / "dev_answer.json")
    assert main(_args(data, tmp_path / "out", zh_bert_config, "--do-eval")) == 2
    assert "no dev_answer.json (--do-eval needs CHID's answers)" in capsys.readouterr().err
    (data / "train.json").write_text('{"candidates": "一心一意", "content": ["#idiom000000#"]}\n', encoding="utf-8")
    assert main(_args(data, tmp_path / "out", zh_bert_config, "--do-train")) == 2
    assert "train.json:1: a CHID line is" in capsys.readouterr().err
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "一", "心"]))
    with pytest.raises(BertDetrError, match=r"no \[unused1\]"):
        convert_examples_to_features(read_chid_examples(*chid_files(CHID, "test")), FullTokenizer(str(vocab)))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_clues_zip_test_files_are_read(tmp_path):
    """CLUE's chid_public.zip has no test.json but test1.1.json (and test1.0.json)."""
    data = tmp_path / "chid"
    shutil.copytree(CHID, data)
    os.rename(data / "test.json", data / "test1.1.json")
    shutil.copy(data / "dev.json", data / "test1.0.json")
    assert chid_files(str(data), "test") == (str(data / "test1.1.json"), None)
    assert chid_files(str(data), "dev")[1] == str(data / "dev_answer.json")
    with pytest.raises(BertDetrError, match="looked for test.json, test1.1.json, test1.0.json"):
        chid_files(str(tmp_path), "test")

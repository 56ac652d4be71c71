"""``bertdetr bert classify`` on CLUE's Chinese tasks: the examples equal those CLUE's own processors
make (``tests/data/bert/clue/golden``), the command end to end with a tiny random BERT and CLUE's
submission lines, and bad lines named by file and line (exit 2, nothing written)."""

import json
import os
import shutil

import pytest

from bertdetr.bert.finetuning.classifier import PROCESSORS
from bertdetr.bert.finetuning.clue_data import CLUE_PROCESSORS, mark_wsc_spans
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from tests.bert.finetuning.conftest import VOCAB_ZH

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
CLUE = os.path.join(DATA, "clue")


def _golden(task, split):
    with open(os.path.join(CLUE, "golden", f"{task}-{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def bert_config(zh_bert_config):
    return zh_bert_config


def _args(task, data, out, bert_config, *extra):
    return ["bert", "classify", "--task-name", task, "--data-dir", str(data), "--output-dir", str(out),
            "--vocab-file", VOCAB_ZH, "--bert-config-file", bert_config, "--max-seq-length", "48",
            "--no-progress", *extra]


@pytest.mark.parametrize("task", sorted(CLUE_PROCESSORS))
def test_examples_equal_clues_own_processors(task):
    processor = PROCESSORS[task]()
    data_dir = os.path.join(CLUE, task)
    for split, get in (("train", processor.get_train_examples), ("dev", processor.get_dev_examples),
                       ("test", processor.get_test_examples)):
        golden = _golden(task, split)
        ours = get(data_dir)
        assert [(e.guid, e.text_a, e.text_b, e.label) for e in ours] == \
            [(g["guid"], g["text_a"], g["text_b"], g["label"]) for g in golden], (task, split)
        assert processor.get_labels() == golden[0]["label_list"]


def test_wsc_marks_the_noun_and_the_pronoun_either_way_round():
    assert mark_wsc_spans("他一进门，小王就笑了。", "小王", 5, "他", 0) == "[他]一进门，_小王_就笑了。"
    assert mark_wsc_spans("妈妈做好饭，她叫我们。", "妈妈", 0, "她", 6) == "_妈妈_做好饭，[她]叫我们。"


def _copy(task, tmp_path):
    data = tmp_path / task
    shutil.copytree(os.path.join(CLUE, task), data)
    return data


def test_tnews_trains_evaluates_and_writes_clues_submission_lines(bert_config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args("tnews", os.path.join(CLUE, "tnews"), out, bert_config, "--do-train", "--do-eval",
                      "--do-predict", "--train-batch-size", "4", "--num-train-epochs", "2",
                      "--learning-rate", "1e-3")) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    assert metrics["task"] == "tnews" and metrics["num_examples"] == 4 and 0 <= metrics["accuracy"] <= 1
    labels = PROCESSORS["tnews"]().get_labels()
    lines = [json.loads(x) for x in (out / "tnews_predict.json").read_text(encoding="utf-8").splitlines()]
    probabilities = [[float(p) for p in row.split("\t")]
                     for row in (out / "test_results.tsv").read_text().splitlines()]
    assert [x["id"] for x in lines] == [0, 1, 2]
    assert all(set(x) == {"id", "label", "label_desc"} and x["label_desc"] == "" for x in lines)
    # each line's label is the argmax of its probabilities in test_results.tsv, in CLUE's label order
    assert [x["label"] for x in lines] == [labels[max(range(len(row)), key=row.__getitem__)]
                                           for row in probabilities]
    assert all(len(row) == 15 for row in probabilities)


def test_pair_tasks_predict_with_a_fine_tuned_model(bert_config, tmp_path):
    """AFQMC (a pair task) trained, then predicting alone from its output dir: afqmc_predict.json
    without label_desc; CMNLI skips "-" dev lines."""
    out = tmp_path / "afqmc"
    assert main(_args("afqmc", os.path.join(CLUE, "afqmc"), out, bert_config, "--do-train",
                      "--train-batch-size", "3", "--num-train-epochs", "1")) == 0
    assert main(_args("afqmc", os.path.join(CLUE, "afqmc"), out, bert_config, "--do-predict")) == 0
    lines = [json.loads(x) for x in (out / "afqmc_predict.json").read_text(encoding="utf-8").splitlines()]
    assert [sorted(x) for x in lines] == [["id", "label"]] * 3 and {x["label"] for x in lines} <= {"0", "1"}
    assert main(_args("cmnli", os.path.join(CLUE, "cmnli"), tmp_path / "cmnli", bert_config, "--do-train",
                      "--do-eval", "--do-predict", "--features-only")) == 0


def test_integer_labels_and_blank_lines_are_read(tmp_path):
    data = _copy("afqmc", tmp_path)
    (data / "dev.json").write_text('{"sentence1": "花呗", "sentence2": "借呗", "label": 1}\n\n',
                                   encoding="utf-8")
    [example] = PROCESSORS["afqmc"]().get_dev_examples(str(data))
    assert example.label == "1" and example.guid == "dev-0"


BAD = [
    ("afqmc", "train.json", '{"sentence1": "花呗怎么还款", "label": "1"}\n', "train.json:1: no 'sentence2' field"),
    ("tnews", "train.json", '{"sentence": "新闻", "label": "102"}\n{"sentence": "新闻" "label": "103"}\n',
     "train.json:2: not a JSON object"),
    ("tnews", "train.json", '["新闻", "102"]\n', "train.json:1: a JSON list, not an object"),
    ("tnews", "train.json", '{"sentence": "新闻", "label": "999"}\n', "train.json:1: label '999' is not one of"),
    ("csl", "train.json", '{"abst": "摘要", "keyword": "水声学", "label": "1"}\n', "'keyword' is '水声学', expected list"),
    ("wsc", "dev.json", '{"target": {"span2_index": 2, "span1_index": 0, "span1_text": "小王", "span2_text": "他"}, '
     '"label": "true", "text": "小王说他来了。"}\n', "dev.json:1: target span2_text '他' is not at span2_index 2"),
    ("ocnli", "dev.json", '{"sentence1": "下雪了", "sentence2": "很冷", "label": true}\n', "'label' is True"),
]


@pytest.mark.parametrize("task,name,text,message", BAD)
def test_bad_lines_exit_2_naming_file_and_line_and_write_nothing(bert_config, tmp_path, capsys, task, name, text,
                                                                  message):
    data = _copy(task, tmp_path)
    (data / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert main(_args(task, data, out, bert_config, "--do-train", "--do-eval", "--features-only")) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() or not os.listdir(out)


def test_gbk_file_is_an_error_saying_how_to_convert(tmp_path):
    data = _copy("tnews", tmp_path)
    (data / "train.json").write_bytes('{"sentence": "这部电影很好看", "label": "102"}\n'.encode("gbk"))
    with pytest.raises(BertDetrError, match="iconv"):
        PROCESSORS["tnews"]().get_train_examples(str(data))

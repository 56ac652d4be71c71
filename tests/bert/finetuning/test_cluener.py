"""``bertdetr bert ner`` on data in CLUENER2020's layout: the reader (BIOS tags as CLUENER's baseline
makes them), CLUENER's official score against goldens of its own ``score.py``, the command end to
end with a tiny random BERT and its submission lines, and bad lines (exit 2, file and line named,
nothing written)."""

import json
import os
import shutil

import pytest

from bertdetr.bert.finetuning.ner_data import cluener_label, read_cluener
from bertdetr.bert.finetuning.ner_metrics import cluener_score
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from tests.bert.finetuning.conftest import VOCAB_ZH

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert", "zh")
CLUENER = os.path.join(DATA, "cluener")

# CLUENER's README's example line
EXAMPLE = {"text": "北京勘察设计协会副会长兼秘书长周荫如",
           "label": {"organization": {"北京勘察设计协会": [[0, 7]]}, "name": {"周荫如": [[15, 17]]},
                     "position": {"副会长": [[8, 10]], "秘书长": [[12, 14]]}}}


def _write(path, *objects):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), encoding="utf-8")
    return path


def _lines(path):
    return [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]


@pytest.fixture
def bert_config(zh_bert_config):
    return zh_bert_config


def _args(data, out, bert_config, *extra):
    return ["bert", "ner", "--data-dir", str(data), "--output-dir", str(out), "--vocab-file", VOCAB_ZH,
            "--bert-config-file", bert_config, "--max-seq-length", "32", "--no-progress", *extra]


def test_reads_the_readme_example_as_cluener_with_bios_tags(tmp_path):
    [s] = read_cluener(_write(tmp_path / "a.json", EXAMPLE))
    assert "".join(s.words) == EXAMPLE["text"] and s.entities == EXAMPLE["label"] and s.key == 0
    assert s.tags[:9] == ["B-organization"] + ["I-organization"] * 7 + ["B-position"]
    assert s.tags[11] == "O" and s.tags[15:] == ["B-name", "I-name", "I-name"]
    [single] = read_cluener(_write(tmp_path / "b.json", {"text": "王说好", "label": {"name": {"王": [[0, 0]]}}}))
    assert single.tags == ["S-name", "O", "O"]  # CLUENER's BIOS: S- for a one-character entity


def test_tags_give_back_every_label_of_the_data():
    for split in ("train", "dev"):
        for s in read_cluener(os.path.join(CLUENER, f"{split}.json")):
            assert cluener_label("".join(s.words), s.tags) == (s.entities or {})


def test_lines_without_label_test_files_ids_and_a_byte_order_mark(tmp_path):
    train = read_cluener(_write(tmp_path / "t.json", {"text": "下雨了"}, EXAMPLE, {"text": "晴", "label": None}))
    assert train[0].tags == ["O"] * 3 and train[1].key == 1 and train[2].tags == ["O"]
    test = read_cluener(os.path.join(CLUENER, "test.json"), tags_required=False)
    assert all(s.tags is None for s in test) and [s.key for s in test] == list(range(21))
    assert "".join(test[-1].words) == "我用iPad 看了一部电影"  # a space is a character like any other
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(EXAMPLE, ensure_ascii=False).encode() + b"\n")
    assert read_cluener(path)[0].entities == EXAMPLE["label"]


def test_overlapping_entities_overwrite_as_clueners_reader_with_a_warning(tmp_path):
    line = {"text": "北京大学医院", "label": {"organization": {"北京大学": [[0, 3]]}, "address": {"北京": [[0, 1]]}}}
    with pytest.warns(UserWarning, match="1 entities overlap"):
        [s] = read_cluener(_write(tmp_path / "o.json", line))
    assert s.tags == ["B-address", "I-address", "I-organization", "I-organization", "O", "O"]


def test_score_equals_clueners_score_py():
    golden = json.loads(open(os.path.join(CLUENER, "score_golden.json"), encoding="utf-8").read())
    gold = [line.get("label") for line in _lines(os.path.join(CLUENER, "dev.json"))]
    pred = [line["label"] for line in _lines(os.path.join(CLUENER, "pred_dev.json"))]
    ours = cluener_score(gold, pred, golden["types"])
    assert ours["macro_f1"] == pytest.approx(golden["macro_f1"], abs=1e-12)
    assert {t: row["f1"] for t, row in ours["per_type"].items()} == pytest.approx(golden["f1"], abs=1e-12)


def test_score_counts_entity_texts_once_and_leaves_out_types_with_no_entity():
    gold = [{"name": {"张伟": [[0, 1], [3, 4]]}}, None]
    pred = [{"name": {"张伟": [[0, 1]]}, "address": {"北京": [[5, 6]]}}, {}]
    score = cluener_score(gold, pred, ["name", "address", "book"])
    assert score["per_type"]["name"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert score["per_type"]["address"]["f1"] == 0 and "book" not in score["per_type"]
    assert score["macro_f1"] == pytest.approx(1 / 2)


def test_ner_on_cluener_data_trains_evaluates_and_writes_the_submission(bert_config, tmp_path):
    out = tmp_path / "out"
    assert main(_args(CLUENER, out, bert_config, "--do-train", "--do-eval", "--do-predict", "--train-batch-size", "16",
                      "--num-train-epochs", "2", "--learning-rate", "1e-3")) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    types = ["address", "company", "name", "organization", "product"]
    assert set(metrics["cluener"]["per_type"]) <= set(types) and 0 <= metrics["cluener"]["macro_f1"] <= 1
    assert {"address", "company", "name", "organization"} <= set(metrics["cluener"]["per_type"])
    assert "eval_cluener_macro_f1 = " in (out / "eval_results.txt").read_text()
    assert not (out / "test_predictions.txt").exists()
    test = _lines(os.path.join(CLUENER, "test.json"))
    submitted = _lines(out / "cluener_predict.json")
    assert [s["id"] for s in submitted] == [t["id"] for t in test]
    for line, sub in zip(test, submitted):
        assert set(sub) == {"id", "label"} and set(sub["label"]) <= set(types)
        for entities in sub["label"].values():
            for text, spans in entities.items():
                assert all(line["text"][a:b + 1] == text for a, b in spans)
    labels = json.loads((out / "model" / "config.json").read_text())["id2label"].values()
    assert {label[:2] for label in labels} == {"O", "B-", "I-", "S-"}


def test_explicit_format_and_missing_files_say_the_other_layout(bert_config, tmp_path, capsys):
    assert main(_args(CLUENER, tmp_path / "out", bert_config, "--do-train", "--data-format", "conll")) == 2
    err = capsys.readouterr().err
    assert "train.txt not found" in err and "cluener's layout: train.json" in err


BAD = [
    ("dev.json", {"text": "张伟来了", "label": {"name": {"张伟": [[1, 2]]}}}, "dev.json:1: name '张伟' is not at [1, 2]"),
    ("dev.json", {"text": "张伟来了", "label": {"name": {"张伟": [0, 1]}}}, "offsets must be a list of [first, last]"),
    ("dev.json", {"text": "张伟来了", "label": {"name": {"张伟": [[0, 9]]}}}, "is not at [0, 9]"),
    ("train.json", {"sentence": "张伟来了"}, "train.json:1: no 'text' string"),
    ("train.json", {"text": "张伟来了", "label": ["name"]}, "train.json:1: 'label' must be an object"),
]


@pytest.mark.parametrize("name,line,message", BAD)
def test_bad_lines_exit_2_naming_file_and_line_and_write_nothing(bert_config, tmp_path, capsys, name, line, message):
    data = tmp_path / "data"
    shutil.copytree(CLUENER, data)
    _write(data / name, line)
    out = tmp_path / "out"
    assert main(_args(data, out, bert_config, "--do-train", "--do-eval", "--features-only")) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() or not os.listdir(out)


def test_reader_errors_are_bertdetr_errors(tmp_path):
    with pytest.raises(BertDetrError, match="empty 'text'"):
        read_cluener(_write(tmp_path / "e.json", {"text": ""}))


def test_a_gbk_line_is_named_as_not_utf8_before_its_offsets(tmp_path):
    path = _write(tmp_path / "train.json", EXAMPLE)
    with open(path, "ab") as f:
        f.write(json.dumps({"text": "李四在上海", "label": {"name": {"李四": [[0, 1]]}}}, ensure_ascii=False).encode("gbk"))
    with pytest.raises(BertDetrError, match=r"train.json is not UTF-8 text: .*\(first on line 2\).*iconv -f GBK"):
        read_cluener(path)


def test_types_only_in_dev_json_are_named(bert_config, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "train.json", EXAMPLE)
    _write(data / "dev.json", {"text": "王说好", "label": {"name": {"王": [[0, 0]]}, "game": {"好": [[2, 2]]}}})
    with pytest.warns(UserWarning, match=r"dev.json: entity type\(s\) game not in the training data"):
        assert main(_args(data, tmp_path / "out", bert_config, "--do-train", "--do-eval", "--features-only")) == 0

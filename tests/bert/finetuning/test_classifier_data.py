"""GLUE processors and features against goldens made by Google's run_classifier.py (bert-tensorflow
1.0.4, tests/data/bert/glue/make_goldens.py) on hand-made GLUE-format files."""

import json
import os

import pytest

from bertdetr.bert.finetuning.classifier_data import (
    PROCESSORS,
    InputExample,
    PaddingInputExample,
    TsvProcessor,
    _truncate_seq_pair,
    convert_single_example,
    file_based_convert_examples_to_features,
)
from bertdetr.bert.data.records import iter_examples
from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.errors import BertDetrError

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
GLUE = os.path.join(DATA, "glue")
GOLDEN = os.path.join(GLUE, "golden")
FOLDERS = {"cola": "CoLA", "mnli": "MNLI", "mrpc": "MRPC", "xnli": "XNLI"}
SPLITS = [(t, s) for t in FOLDERS for s in ("train", "dev", "test") if not (t == "xnli" and s == "test")]


@pytest.fixture(scope="module")
def tokenizer():
    return FullTokenizer(os.path.join(DATA, "vocab-uncased.txt"), do_lower_case=True)


def _golden(task, split, length):
    with open(os.path.join(GOLDEN, f"{task}-{split}-{length}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _examples(task, split):
    processor = PROCESSORS[task]()
    get = {"train": processor.get_train_examples, "dev": processor.get_dev_examples,
           "test": processor.get_test_examples}[split]
    return processor, get(os.path.join(GLUE, FOLDERS[task]))


@pytest.mark.parametrize("task,split", SPLITS)
def test_processor_examples_equal_googles(task, split):
    processor, examples = _examples(task, split)
    golden = _golden(task, split, 128)
    assert len(examples) == len(golden) > 0
    assert processor.get_labels() == golden[0]["label_list"]
    for ex, g in zip(examples, golden):
        assert (ex.guid, ex.text_a, ex.text_b, ex.label) == (g["guid"], g["text_a"], g["text_b"], g["label"])


@pytest.mark.parametrize("length", [128, 20])
@pytest.mark.parametrize("task,split", SPLITS)
def test_features_equal_googles(task, split, length, tokenizer):
    processor, examples = _examples(task, split)
    golden = _golden(task, split, length)
    for i, (ex, g) in enumerate(zip(examples, golden)):
        f = convert_single_example(i, ex, processor.get_labels(), length, tokenizer)
        assert f.input_ids == g["input_ids"], ex.guid
        assert f.input_mask == g["input_mask"]
        assert f.segment_ids == g["segment_ids"]
        assert f.label_id == g["label_id"]
        assert f.is_real_example == g["is_real_example"]
    if length == 20:  # the short goldens do truncate (else this test would not cover it)
        assert any(sum(g["input_mask"]) == 20 for g in golden)


@pytest.mark.parametrize("task,split", SPLITS)
def test_tf_record_equals_googles(task, split, tokenizer, tmp_path):
    """Our train/eval/predict.tf_record holds what Google's file_based_convert_examples_to_features
    wrote (read back from both files; TF orders map entries by hash, we sort, so bytes differ)."""
    processor, examples = _examples(task, split)
    out = str(tmp_path / "x.tf_record")
    file_based_convert_examples_to_features(examples, processor.get_labels(), 128, tokenizer, out)
    ours = list(iter_examples(out))
    google = list(iter_examples(os.path.join(GOLDEN, f"{task}-{split}-128.tf_record")))
    assert len(ours) == len(google) == len(examples)
    for a, b in zip(ours, google):
        assert sorted(a) == sorted(b) == ["input_ids", "input_mask", "is_real_example", "label_ids", "segment_ids"]
        for k in a:
            assert list(a[k]) == list(b[k]), k


def test_truncate_seq_pair_cuts_the_longer_first():
    a, b = list("abcdef"), list("xy")
    _truncate_seq_pair(a, b, 5)
    assert (a, b) == (list("abc"), list("xy"))
    a, b = list("abc"), list("xyz")
    _truncate_seq_pair(a, b, 4)  # equal lengths: b loses first
    assert (a, b) == (list("ab"), list("xy"))


def test_padding_example_is_all_zero(tokenizer):
    f = convert_single_example(0, PaddingInputExample(), ["0", "1"], 8, tokenizer)
    assert f.input_ids == f.input_mask == f.segment_ids == [0] * 8
    assert (f.label_id, f.is_real_example) == (0, False)


def test_mnli_reads_the_matched_dev_set_and_last_column_label():
    _, dev = _examples("mnli", "dev")
    assert all(ex.guid.startswith("dev_matched-") for ex in dev)
    assert [ex.label for ex in dev] == ["neutral", "contradiction", "entailment", "contradiction"]
    _, test = _examples("mnli", "test")
    assert {ex.label for ex in test} == {"contradiction"}  # Google's dummy label for unlabeled rows


def test_xnli_keeps_only_its_language_and_renames_contradictory():
    _, dev = _examples("xnli", "dev")
    assert len(dev) == 3 and all("妈妈" in ex.text_a for ex in dev)
    _, train = _examples("xnli", "train")
    assert "contradictory" not in {ex.label for ex in train} and "contradiction" in {ex.label for ex in train}
    with pytest.raises(BertDetrError, match="no test set"):
        PROCESSORS["xnli"]().get_test_examples(os.path.join(GLUE, "XNLI"))


def test_tsv_processor_csv_and_tsv():
    d = os.path.join(GLUE, "custom")
    p = TsvProcessor(d, text_a_column="review", text_b_column="product", label_column="sentiment")
    assert p.get_labels() == ["negative", "positive"]
    train = p.get_train_examples(d)
    assert len(train) == 6
    assert train[2].text_a == 'The lid cracks, and the "auto-off" never triggers.'
    assert train[4].text_a == "Toasts unevenly;\none side is always burnt."  # a quoted line break
    assert (train[0].text_b, train[0].label) == ("kettle", "positive")
    test = p.get_test_examples(d)  # .tsv without the label column: the first label as dummy
    assert [(e.text_a, e.label) for e in test] == [("Does what it says.", "negative"),
                                                    ("Not worth the price.", "negative")]
    single = TsvProcessor(d, text_a_column="review", label_column="sentiment")
    assert single.get_dev_examples(d)[0].text_b is None
    with pytest.raises(BertDetrError, match=r"train\.csv:1: no column named 'text'"):
        TsvProcessor(d, text_a_column="text", label_column="sentiment").get_train_examples(d)


def test_tsv_processor_json_lines(tmp_path):
    """Own data as JSON lines (the layout of CLUE's files): fields by name, numeric labels as text,
    a test file without the label field, a missing or non-text field named by line."""
    rows = [{"id": 1, "review": "物流很快，质量不错", "stars": 5}, {"id": 2, "review": "用了两天就坏了", "stars": 1},
            {"review": "还可以", "stars": 3, "extra": [1, 2]}]
    _write(str(tmp_path / "train.jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    _write(str(tmp_path / "test.json"), '{"review": "很好"}\n\n{"review": "一般"}\n')
    p = TsvProcessor(str(tmp_path), text_a_column="review", label_column="stars")
    assert p.get_labels() == ["1", "3", "5"]
    assert [(e.text_a, e.label, e.source.rsplit("/", 1)[1]) for e in p.get_train_examples(str(tmp_path))] == [
        ("物流很快，质量不错", "5", "train.jsonl:1"), ("用了两天就坏了", "1", "train.jsonl:2"), ("还可以", "3", "train.jsonl:3")]
    assert [(e.text_a, e.label) for e in p.get_test_examples(str(tmp_path))] == [("很好", "1"), ("一般", "1")]
    _write(str(tmp_path / "dev.jsonl"), '{"review": "好", "stars": 5}\n{"stars": 4}\n')
    with pytest.raises(BertDetrError, match=r"dev\.jsonl:2: no 'review' field \(the line has 'stars'\)"):
        TsvProcessor(str(tmp_path), text_a_column="review", label_column="stars").get_dev_examples(str(tmp_path))
    with pytest.raises(BertDetrError, match=r"train\.jsonl:1: no column named 'text'"):
        TsvProcessor(str(tmp_path), text_a_column="text", label_column="stars").get_train_examples(str(tmp_path))


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


@pytest.mark.parametrize("name, sep", [("train.tsv", "\t"), ("train.csv", ",")])
def test_a_byte_order_mark_is_no_part_of_the_header(tmp_path, name, sep):
    # Excel's "CSV UTF-8" and Notepad's UTF-8 begin the file with a byte order mark
    _write(str(tmp_path / name), f"\ufeffsentence{sep}label\n很好{sep}1\n")
    [example] = TsvProcessor(str(tmp_path)).get_train_examples(str(tmp_path))
    assert (example.text_a, example.label) == ("很好", "1")


@pytest.mark.parametrize("name", ["train.tsv", "train.csv"])
def test_a_file_of_blank_lines_is_said_to_be_empty(tmp_path, name):
    _write(str(tmp_path / name), "\n\n\n")
    with pytest.raises(BertDetrError, match=rf"{name}: empty file \(only blank lines\): a header line"):
        TsvProcessor(str(tmp_path), text_a_column="review").get_train_examples(str(tmp_path))


def test_row_with_wrong_number_of_columns_names_file_and_line(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    _write(str(tmp_path / "train.tsv"), header + "1\t1\t2\tA b .\tA c .\n0\t3\t4\tonly four\n")
    with pytest.raises(BertDetrError, match=r"train\.tsv:3: row has 4 column\(s\), expected 5"):
        PROCESSORS["mrpc"]().get_train_examples(str(tmp_path))
    _write(str(tmp_path / "dev.tsv"), header + "1\t1\t2\tA b .\tA c .\n\n")
    with pytest.raises(BertDetrError, match=r"dev\.tsv:3: .*an empty line"):
        PROCESSORS["mrpc"]().get_dev_examples(str(tmp_path))


def test_label_not_in_list_names_file_and_line(tmp_path, tokenizer):
    _write(str(tmp_path / "train.tsv"), "gj04\t1\t\tGood.\ngj04\t2\t\tBad label.\n")
    p = PROCESSORS["cola"]()
    examples = p.get_train_examples(str(tmp_path))
    convert_single_example(0, examples[0], p.get_labels(), 16, tokenizer)
    with pytest.raises(BertDetrError, match=r"train\.tsv:2: label '2' is not one of the task's labels '0', '1'"):
        convert_single_example(1, examples[1], p.get_labels(), 16, tokenizer)
    with pytest.raises(BertDetrError, match="example x-1: label"):
        convert_single_example(0, InputExample("x-1", "a", label="z"), ["0"], 8, tokenizer)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(BertDetrError, match=r"file not found: .*train\.tsv"):
        PROCESSORS["cola"]().get_train_examples(str(tmp_path))

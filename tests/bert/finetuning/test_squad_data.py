"""SQuAD reading and features against goldens made by Google's own run_squad.py (bert-tensorflow 1.0.4;
tests/data/bert/squad/make_goldens.py), and the errors for files that are not SQuAD."""

import gzip
import json
import random
import shutil

import pytest

from bertdetr.bert.finetuning import squad_data
from bertdetr.bert.data.records import iter_examples
from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.errors import BertDetrError
from tests.conftest import DATA

SETTINGS = {"384": (384, 128, 64), "64": (64, 24, 16)}
FILES = ("train-v1.1", "dev-v1.1", "train-v2.0", "dev-v2.0")


@pytest.fixture(scope="module")
def tokenizer():
    return FullTokenizer(str(DATA / "bert" / "vocab-uncased.txt"), do_lower_case=True)


def _golden(data_dir, name):
    with gzip.open(data_dir / "bert" / "squad" / "golden" / name, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _load(data_dir, name):
    return squad_data.load_squad_file(str(data_dir / "bert" / "squad" / f"{name}.json"), name.startswith("train"),
                                 name.endswith("v2.0"))


def _feature_json(f: squad_data.InputFeatures) -> dict:
    d = dict(vars(f))
    d["token_to_orig_map"] = {str(k): v for k, v in f.token_to_orig_map.items()}
    d["token_is_max_context"] = {str(k): v for k, v in f.token_is_max_context.items()}
    return d


@pytest.mark.parametrize("name", FILES)
def test_examples_equal_googles(data_dir, name):
    read = _load(data_dir, name)
    gold = _golden(data_dir, f"{name}.examples.jsonl.gz")
    # (``glued``, ours, marks CJK characters split off their neighbours: none in English text)
    assert all(not e.glued for e in read.examples)
    assert [{k: v for k, v in vars(e).items() if k != "glued"} for e in read.examples] == gold
    # The two training answers written not to match their offsets are skipped, as Google does.
    assert [qid for qid, _, _ in read.skipped] == (["curie-nf1", "curie-nf2"] if name.startswith("train") else [])
    # Questions of one paragraph share one doc_tokens list (what the features' cache relies on).
    assert read.examples[0].doc_tokens is read.examples[1].doc_tokens


def test_read_squad_examples_warns_with_the_count(data_dir):
    with pytest.warns(UserWarning, match=r"skipped 2 training question\(s\).*curie-nf1, curie-nf2"):
        examples = squad_data.read_squad_examples(str(data_dir / "bert" / "squad" / "train-v1.1.json"), True)
    assert len(examples) == 24


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("name", FILES)
def test_features_equal_googles(data_dir, tokenizer, name, setting):
    read = _load(data_dir, name)
    features = list(squad_data.convert_examples_to_features(read.examples, tokenizer, *SETTINGS[setting],
                                                       name.startswith("train")))
    gold = _golden(data_dir, f"{name}-{setting}.features.jsonl.gz")
    assert len(features) == len(gold)
    for mine, theirs in zip(features, gold):
        assert _feature_json(mine) == theirs
    if setting == "64":  # the golden covers windows, truncated questions and answers outside windows
        assert max(f.doc_span_index for f in features) > 20
        assert any(len(ex.question_text.split()) > 16 for ex in read.examples)
        if name.startswith("train"):
            assert {f.start_position for f in features if f.doc_span_index == 0} != {0}
            assert sum(f.start_position == 0 for f in features) > len(features) / 2


@pytest.mark.parametrize("name", FILES)
def test_tf_records_equal_googles(data_dir, tokenizer, tmp_path, name):
    """Google's main: training examples shuffled with random.Random(12345), then its FeatureWriter."""
    is_training = name.startswith("train")
    examples = list(_load(data_dir, name).examples)
    if is_training:
        random.Random(12345).shuffle(examples)
    path = str(tmp_path / "ours.tf_record")
    squad_data.write_features(squad_data.convert_examples_to_features(examples, tokenizer, *SETTINGS["384"], is_training),
                         path, is_training)
    theirs = tmp_path / "google.tf_record"
    with gzip.open(data_dir / "bert" / "squad" / "golden" / f"{name}.tf_record.gz") as f, open(theirs, "wb") as out:
        shutil.copyfileobj(f, out)
    ours_records = [{k: list(v) for k, v in r.items()} for r in iter_examples(path)]
    their_records = [{k: list(v) for k, v in r.items()} for r in iter_examples(str(theirs))]
    assert ours_records == their_records
    expected = {"unique_ids", "input_ids", "input_mask", "segment_ids"}
    if is_training:
        expected |= {"start_positions", "end_positions", "is_impossible"}
    assert set(ours_records[0]) == expected


def test_check_is_max_context_all_at_once_is_googles():
    """The per-example table equals Google's per-token function on windows of every shape."""
    for num_tokens in (1, 5, 17, 40):
        for max_tokens in (1, 3, 7, 16):
            for stride in (1, 2, 5, 16):
                spans = squad_data._doc_spans(num_tokens, max_tokens, stride)
                best = squad_data._max_context_spans(spans, num_tokens)
                for i in range(len(spans)):
                    for p in range(spans[i].start, spans[i].start + spans[i].length):
                        assert (best[p] == i) == squad_data._check_is_max_context(spans, i, p)


# ---- bad input --------------------------------------------------------------------------------


def _write(tmp_path, obj, name="bad.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return str(path)


def _qa(**fields):
    return {"data": [{"title": "t", "paragraphs": [{"context": "The cat sat on the mat.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "the mat", "answer_start": 15}], **fields}]}]}]}


def test_a_byte_order_mark_is_read_as_notepad_writes_it(tmp_path):
    path = _write(tmp_path, "\ufeff" + json.dumps(_qa()), "bom.json")
    [example] = squad_data.load_squad_file(path, True).examples
    assert (example.qas_id, example.orig_answer_text) == ("q1", "the mat")


@pytest.mark.parametrize("content, message", [
    ("{\"data\": [", r"bad\.json:1:11: not JSON"),
    ({"rows": []}, r"bad\.json: not a SQuAD file: .*\"data\" list"),
    ([1, 2], r"bad\.json: not a SQuAD file"),
    ({"data": [{"title": "t"}]}, r"bad\.json: data\[0\]: \"paragraphs\" must be list"),
    ({"data": [{"paragraphs": [{"qas": []}]}]}, r"data\[0\]\.paragraphs\[0\]: \"context\" must be str"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [{"question": "q"}]}]}]},
     r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: \"id\" must be str"),
])
def test_not_squad_is_an_error_naming_file_and_place(tmp_path, content, message):
    path = _write(tmp_path, content)
    for is_training in (True, False):
        with pytest.raises(BertDetrError, match=message):
            squad_data.load_squad_file(path, is_training)


def test_squad2_without_the_flag_is_an_error(data_dir):
    for name in ("train-v2.0", "dev-v2.0"):
        with pytest.raises(BertDetrError, match=r"v2\.0\.json, line \d+: data\[0\]\.paragraphs\[0\]\.qas\[9\] \(id 'holmes-x1'\)"
                                                r".*SQuAD 2\.0 data; give --version-2-with-negative"):
            squad_data.load_squad_file(str(data_dir / "bert" / "squad" / f"{name}.json"), name.startswith("train"))


def test_training_answer_errors(tmp_path, data_dir):
    with pytest.raises(BertDetrError, match=r"qas\[0\] \(id 'holmes-1'\): has 2 answers; .*exactly 1 answer"):
        squad_data.load_squad_file(str(data_dir / "bert" / "squad" / "dev-v1.1.json"), True)
    bad = _qa()
    bad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 40
    with pytest.raises(BertDetrError, match=r"qas\[0\] \(id 'q1'\): answer 'the mat' at character 40 is not inside"):
        squad_data.load_squad_file(_write(tmp_path, bad), True)
    with pytest.raises(BertDetrError, match=r"no \"is_impossible\""):
        squad_data.load_squad_file(_write(tmp_path, _qa()), True, version_2_with_negative=True)
    assert len(squad_data.load_squad_file(_write(tmp_path, _qa(is_impossible=False)), True, True).examples) == 1


@pytest.mark.parametrize("args, message", [
    ((64, 24, 61), r"--max-seq-length 64 is too small for the question"),
    ((64, 46, 16), r"--doc-stride 46 is larger than the room left for the document \(45 tokens"),
    ((64, 0, 16), r"must be positive"),
])
def test_window_settings_errors(data_dir, tokenizer, args, message):
    read = _load(data_dir, "dev-v1.1")
    with pytest.raises(BertDetrError, match=message):
        next(squad_data.convert_examples_to_features(read.examples, tokenizer, *args, False))

"""Chinese whole-word masking (``chinese_ref.py``) against independent references.

- jieba's own ``jieba.lcut`` for the words;
- HFL's way of making the data, done plainly: each jieba word tokenized on its own, every
  character of a word after its first written as a ``##`` piece, then the plain make-data
  reference (``bench/reference_pretraining_data.py``, itself checked against Google's records);
- transformers' ``BertTokenizer`` for the positions of a ``run_chinese_ref.py`` ref file.
"""

import json
import pathlib
import random
import sys
import warnings

import jieba
import pytest

from bertdetr.bert.data.tokenization import FullTokenizer, is_chinese_char, load_vocab
from bertdetr.bert.pretraining.chinese_ref import SegmenterMarks, add_sub_symbol, chinese_ref, jieba_segmenter
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.bert.pretraining.make_data import make_pretraining_data
from bertdetr.cli import main
from tests.bert.pretraining.test_create_pretraining_data import _decoded
from tests.bert.pretraining.test_create_pretraining_data_oracle import reference

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "bert"
CORPUS = DATA / "zh" / "corpus_zh.txt"
VOCAB_FILE = str(DATA / "zh" / "vocab_zh.txt")
VOCAB = load_vocab(VOCAB_FILE)
TOKENIZER = FullTokenizer(VOCAB_FILE)
LINES = [line.strip() for line in CORPUS.read_text(encoding="utf-8").split("\n") if line.strip()]


def _is_word(word: str) -> bool:
    return len(word) > 1 and all(is_chinese_char(c) for c in word)


def _hfl_tokens(line: str) -> list[str]:
    """The line's word pieces with HFL's marks: each jieba word tokenized on its own, its
    characters after the first as "##" pieces (only in words of two or more CJK characters)."""
    out = []
    for word in jieba.lcut(line):
        pieces = TOKENIZER.tokenize(word)
        if _is_word(word):
            pieces = pieces[:1] + ["##" + p if len(p) == 1 and is_chinese_char(p) else p for p in pieces[1:]]
        out += pieces
    return out


class _PlainIds(dict):
    """Token -> id, with a marked character "##X" read as X (the records hold plain ids)."""

    def __missing__(self, token):
        return self[token[2:]]


def _reference_records(config: PretrainingDataConfig) -> list:
    documents = reference.read_documents(CORPUS, _hfl_tokens)
    rng = random.Random(config.random_seed)
    instances = reference.create_instances(documents, config, list(VOCAB), rng)
    return [reference.to_features(inst, _PlainIds(VOCAB), config) for inst in instances]


CONFIGS = [
    dict(),
    dict(max_seq_length=32, max_predictions_per_seq=8, masked_lm_prob=0.5, random_seed=7, dupe_factor=3),
    dict(max_seq_length=64, short_seq_prob=0.5, random_seed=99, dupe_factor=2),
]


def _chinese_words(words):
    return [w for w in words if _is_word(w)]


def test_the_segmenter_is_jiebas_lcut():
    segment = jieba_segmenter()
    for line in LINES:
        assert segment(line) == jieba.lcut(line)
    # generated lines: jieba's dictionary words, lone characters (its HMM's unknown words), Latin
    # text, digits and punctuation run together; the Chinese words (all the marks use) are jieba's
    draw = random.Random(0)
    words = [line.split()[0] for line in open(pathlib.Path(jieba.__file__).parent / "dict.txt", encoding="utf-8")]
    extras = ["iPhone", "GPU", "2024年", "3.5%", " ", "，", "。", "e.g.", "café", "１２３", "《", "》", "…"]
    for _ in range(3000):
        line = "".join(draw.choice(words) if draw.random() < 0.7 else chr(draw.randint(0x4E00, 0x9FA5))
                       if draw.random() < 0.5 else draw.choice(extras) for _ in range(draw.randint(1, 15)))
        assert _chinese_words(segment(line)) == _chinese_words(jieba.lcut(line)), line
    # the corpus has the words whole-word masking is for, and HFL's marking keeps the tokens
    assert sum(_is_word(w) for line in LINES for w in jieba.lcut(line)) > 200
    for line in LINES:
        assert [t.removeprefix("##") if len(t) == 3 else t for t in _hfl_tokens(line)] == TOKENIZER.tokenize(line)


@pytest.mark.parametrize("flags", CONFIGS)
def test_records_equal_the_reference_on_hfl_marked_pieces(tmp_path, flags):
    config = PretrainingDataConfig(do_whole_word_mask=True, word_segmenter="jieba", **flags)
    out = tmp_path / "wwm.tfrecord"
    make_pretraining_data([str(CORPUS)], str(out), VOCAB_FILE, config)
    records = _decoded(out)
    assert records == _reference_records(config)
    # plain ids only: no mark left in the records
    assert max(max(r["input_ids"] + r["masked_lm_ids"]) for r in records) < len(VOCAB)
    # the words did steer the masking: without the segmenter the records differ
    plain = tmp_path / "plain.tfrecord"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "mostly Chinese" (tested below)
        make_pretraining_data([str(CORPUS)], str(plain), VOCAB_FILE,
                              PretrainingDataConfig(do_whole_word_mask=True, **flags))
    assert _decoded(plain) != records


def test_jieba_itself_gives_the_same_records_as_its_rust_port(tmp_path, monkeypatch):
    config = PretrainingDataConfig(do_whole_word_mask=True, word_segmenter="jieba", dupe_factor=2)
    make_pretraining_data([str(CORPUS)], str(tmp_path / "fast.tfrecord"), VOCAB_FILE, config)
    monkeypatch.setitem(sys.modules, "rjieba", None)  # import rjieba fails: jieba's Python code
    assert "lcut" in jieba_segmenter().__code__.co_names
    make_pretraining_data([str(CORPUS)], str(tmp_path / "jieba.tfrecord"), VOCAB_FILE, config)
    assert (tmp_path / "fast.tfrecord").read_bytes() == (tmp_path / "jieba.tfrecord").read_bytes()


def test_masked_positions_cover_whole_words(tmp_path):
    """Every masked character of a two-character word that is whole in the record has its
    partner masked too (the groups are taken whole or not at all)."""
    config = PretrainingDataConfig(do_whole_word_mask=True, word_segmenter="jieba", random_seed=3)
    out = tmp_path / "wwm.tfrecord"
    make_pretraining_data([str(CORPUS)], str(out), VOCAB_FILE, config)
    words = {w for line in LINES for w in jieba.lcut(line) if _is_word(w)}
    inv = {i: t for t, i in VOCAB.items()}
    joined = 0
    for r in _decoded(out):
        original = list(r["input_ids"])
        masked = set()
        for p, i, w in zip(r["masked_lm_positions"], r["masked_lm_ids"], r["masked_lm_weights"]):
            if w:
                original[p] = i
                masked.add(p)
        masked_pairs = [p for p in masked if p + 1 in masked and inv[original[p]] + inv[original[p + 1]] in words]
        joined += len(masked_pairs)
    assert joined > 50


def test_a_ref_file_made_with_transformers_tokenizer_gives_the_same_records(tmp_path):
    """run_chinese_ref.py's positions: transformers' BertTokenizer with [CLS] at 0, jieba's words."""
    from transformers import BertTokenizer

    bert = BertTokenizer(VOCAB_FILE)
    ref = tmp_path / "corpus.ref"
    with open(ref, "w") as f:
        for line in LINES:
            tokens = bert.convert_ids_to_tokens(bert(line)["input_ids"])
            f.write(json.dumps(chinese_ref(tokens, jieba.lcut(line))) + "\n")
    config = PretrainingDataConfig(do_whole_word_mask=True, random_seed=5)
    make_pretraining_data([str(CORPUS)], str(tmp_path / "ref.tfrecord"), VOCAB_FILE, config, ref_file=str(ref))
    jieba_config = PretrainingDataConfig(do_whole_word_mask=True, random_seed=5, word_segmenter="jieba")
    make_pretraining_data([str(CORPUS)], str(tmp_path / "jieba.tfrecord"), VOCAB_FILE, jieba_config)
    assert (tmp_path / "ref.tfrecord").read_bytes() == (tmp_path / "jieba.tfrecord").read_bytes()


def test_add_sub_symbol_matches_the_line_words_anywhere():
    """run_chinese_ref.py's quirk, kept: the words of a line are matched greedily, longest first,
    wherever they spell out, not only where the segmenter put them."""
    tokens = ["[CLS]", "研", "究", "生", "命", "[SEP]"]
    # segmented as 研究 / 生命: the greedy match takes 研究生 (also a word of the line) first
    assert add_sub_symbol(tokens, {"研究", "生命", "研究生"}) == ["[CLS]", "研", "##究", "##生", "命", "[SEP]"]
    assert add_sub_symbol(tokens, {"研究", "生命"}) == ["[CLS]", "研", "##究", "生", "##命", "[SEP]"]
    assert chinese_ref(tokens, ["研究", "生命"]) == [2, 4]
    assert chinese_ref(["a", "##b", "中", "文"], ["ab", "中文"]) == [3]  # only CJK characters count


def test_segmenter_marks_equal_chinese_ref_on_the_tokens():
    """The string scan equals add_sub_symbol on token lists, also with characters the vocabulary
    lacks ([UNK]), Latin words with "##" pieces and digits between the Chinese ones."""
    inv = {i: t for t, i in VOCAB.items()}
    draw = random.Random(1)
    lines = list(LINES)
    pieces = [line[k:k + draw.randint(1, 6)] for line in LINES for k in range(0, len(line), 5)]
    pieces += ["龘", "靐", "hello", "tokenization", "2024年", "，", " "]
    lines += ["".join(draw.choice(pieces) for _ in range(draw.randint(1, 25))) for _ in range(2000)]
    segment = jieba_segmenter()
    marks = SegmenterMarks(segment, inv)
    unknown = 0
    for line in lines:
        ids = TOKENIZER.tokenize_to_ids(line)
        tokens = [inv[i] for i in ids]
        unknown += "[UNK]" in tokens
        assert marks(line, ids) == chinese_ref(tokens, segment(line)), line
    assert unknown > 100


def test_whole_word_masking_of_chinese_without_a_segmenter_warns_once(tmp_path):
    second = tmp_path / "b.txt"
    second.write_text(CORPUS.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.warns(UserWarning, match="mostly Chinese.*--word-segmenter jieba") as caught:
        make_pretraining_data([str(CORPUS), str(second)], str(tmp_path / "{index}.tfrecord"), VOCAB_FILE,
                              PretrainingDataConfig(do_whole_word_mask=True, dupe_factor=1))
    assert len([w for w in caught if "mostly Chinese" in str(w.message)]) == 1
    english = tmp_path / "en.txt"
    english.write_text("The cat sat on the mat.\nIt was warm there.\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_pretraining_data([str(english)], str(tmp_path / "en.tfrecord"), VOCAB_FILE,
                              PretrainingDataConfig(do_whole_word_mask=True, dupe_factor=1))
        make_pretraining_data([str(CORPUS)], str(tmp_path / "zh.tfrecord"), VOCAB_FILE,
                              PretrainingDataConfig(do_whole_word_mask=True, word_segmenter="jieba",
                                                    dupe_factor=1))


# --- bad input ------------------------------------------------------------------------------------

def _make_data(tmp_path, *flags):
    return main(["bert", "make-data", "--input-file", str(CORPUS), "--output-file", str(tmp_path / "out.tfrecord"),
                 "--vocab-file", VOCAB_FILE, "--no-progress", "--dupe-factor", "1", *flags])


def _good_ref_lines():
    return [json.dumps(chinese_ref(["[CLS]", *TOKENIZER.tokenize(line)], jieba.lcut(line))) for line in LINES]


@pytest.mark.parametrize("case", ["short", "long", "position", "not-json", "not-integers"])
def test_a_bad_ref_file_names_its_line(tmp_path, capsys, case):
    lines = _good_ref_lines()
    where = {"short": None, "long": None, "position": 4, "not-json": 4, "not-integers": 4}[case]
    if case == "short":
        lines = lines[:-1]
    elif case == "long":
        lines = lines + ["[]"]
    elif case == "position":
        lines[3] = json.dumps([1, 200])
    elif case == "not-json":
        lines[3] = "[1, 2"
    else:
        lines[3] = '["2"]'
    ref = tmp_path / "corpus.ref"
    ref.write_text("\n".join(lines) + "\n")
    assert _make_data(tmp_path, "--do-whole-word-mask", "--ref-file", str(ref)) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: ") and str(ref) in err
    if where is not None:
        assert f"line {where}:" in err
    else:
        assert {"short": f"ends after line {len(LINES) - 1}", "long": "more lines"}[case] in err
    assert not (tmp_path / "out.tfrecord").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.ref"]


@pytest.mark.parametrize("flags, message", [
    (["--word-segmenter", "jieba"], "add --do-whole-word-mask"),
    (["--ref-file", "x.ref"], "add --do-whole-word-mask"),
    (["--do-whole-word-mask", "--word-segmenter", "jieba", "--ref-file", "x.ref"], "not both"),
    (["--do-whole-word-mask", "--ref-file", "missing.ref"], "ref file not found: missing.ref"),
])
def test_segmenter_and_ref_file_options_are_checked(tmp_path, capsys, flags, message):
    assert _make_data(tmp_path, *flags) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_several_inputs_need_a_ref_file_template(tmp_path, capsys):
    second = tmp_path / "b.txt"
    second.write_text(CORPUS.read_text(encoding="utf-8"), encoding="utf-8")
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("corpus_zh", "b"):
        (refs / f"{name}.ref").write_text("\n".join(_good_ref_lines()) + "\n")
    args = ["bert", "make-data", "--input-file", f"{CORPUS},{second}", "--output-file", str(tmp_path / "o/{name}.tfrecord"),
            "--vocab-file", VOCAB_FILE, "--no-progress", "--dupe-factor", "1", "--do-whole-word-mask"]
    assert main([*args, "--ref-file", str(refs / "b.ref")]) == 2
    assert "template with {name} or {index}" in capsys.readouterr().err
    assert main([*args, "--ref-file", str(refs / "{name}.ref")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["b.tfrecord", "corpus_zh.tfrecord"]

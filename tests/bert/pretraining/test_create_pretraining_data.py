"""Google's ``create_pretraining_data.py`` functions (``bertdetr.bert.pretraining.create_pretraining_data``): Google's
own records, both draw paths, Google's reading rules and edge cases of the algorithm."""

import collections
import json
import os
import pathlib
import random

import pytest

from bertdetr.bert.data.records import iter_examples, parse_example, read_records, serialize_example
from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.pretraining import create_pretraining_data as pd
from bertdetr.bert.pretraining import draws, features
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.bert.pretraining.features import ExampleEncoder
from bertdetr.bert.pretraining.make_data import make_pretraining_data
from bertdetr.cli import main
from bertdetr.errors import BertDetrError

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "bert"
VOCAB = str(DATA / "vocab-uncased.txt")
SAMPLE = str(DATA / "sample_text.txt")
TOKENIZER = FullTokenizer(VOCAB)


def _decoded(*paths):
    return [{k: v.tolist() for k, v in ex.items()} for ex in iter_examples(paths)]


def _golden(name):
    return [json.loads(line) for line in (DATA / f"sample-{name}.jsonl").open()]


def _flags(name):
    return (DATA / f"sample-{name}.flags").read_text().split()


def _config_from_flags(flags):
    kw = {}
    for flag in flags:
        key, value = flag[2:].split("=")
        field = PretrainingDataConfig.__dataclass_fields__[key]
        kw[key] = value == "True" if field.type in (bool, "bool") else type(field.default)(value)
    return PretrainingDataConfig(**kw)


# --- Google's own output ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "wwm"])
def test_equals_googles_records(tmp_path, name, code_path):
    """Google's script on sample_text.txt (flags in sample-*.flags), record for record."""
    out = tmp_path / "out.tfrecord"
    config = _config_from_flags(_flags(name))
    summary = make_pretraining_data([SAMPLE], str(out), VOCAB, config)
    golden = _golden(name)
    assert _decoded(out) == golden
    assert summary.instances == len(golden) and summary.documents == 3


def test_same_seed_same_bytes_and_encoder_matches_generic(tmp_path):
    config = _config_from_flags(_flags("default"))
    a, b = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    make_pretraining_data([SAMPLE], str(a), VOCAB, config)
    make_pretraining_data([SAMPLE], str(b), VOCAB, config)
    assert a.read_bytes() == b.read_bytes()
    # The fast encoder's bytes are the generic, sorted-key serialization of the same features.
    for data in read_records(a):
        assert serialize_example(parse_example(data)) == data


_WORDS = (open(SAMPLE, encoding="utf-8").read().split()
          + ["unbelievably", "antidisestablishmentarianism", "naïve", "café", "東京", "x" * 250,
             "hyper-parameters", "(e.g.", "[MASK]", "don't", "3.14159", "ÆØÅ", "żółw"])


def _random_corpus(rng, path, num_docs):
    lines = []
    for _ in range(num_docs):
        for _ in range(rng.randint(1, 7)):
            lines.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 30))))
            if rng.random() < 0.05:
                lines.append("\x01\x02")  # not blank, but tokenizes to nothing: no new document
        lines.append(rng.choice(["", "   ", "\t"]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.skipif(draws._compiled is None, reason="bertdetr.bert.pretraining._speedups is not built")
@pytest.mark.parametrize("kw", [
    dict(dupe_factor=3),
    dict(dupe_factor=2, do_whole_word_mask=True, max_seq_length=32, short_seq_prob=0.5),
    dict(max_seq_length=512, max_predictions_per_seq=80, masked_lm_prob=0.3, random_seed=4),
    dict(max_seq_length=20, do_whole_word_mask=True, masked_lm_prob=1.0, max_predictions_per_seq=30),
])
def test_compiled_and_python_paths_write_the_same_bytes(tmp_path, monkeypatch, kw):
    path = tmp_path / "in.txt"
    _random_corpus(random.Random(kw.get("random_seed", 0)), path, num_docs=12)
    config = PretrainingDataConfig(**kw)
    compiled = [tmp_path / "c0.tfrecord", tmp_path / "c1.tfrecord"]
    python = [tmp_path / "p0.tfrecord", tmp_path / "p1.tfrecord"]
    make_pretraining_data([str(path)], ",".join(map(str, compiled)), VOCAB, config)
    monkeypatch.setattr(draws, "_compiled", None)
    monkeypatch.setattr(features, "_compiled", None)
    make_pretraining_data([str(path)], ",".join(map(str, python)), VOCAB, config)
    for c, p in zip(compiled, python):
        assert c.read_bytes() and c.read_bytes() == p.read_bytes()


def test_invalid_utf8_is_ignored_like_google(tmp_path):
    """Invalid bytes are dropped (Google's convert_to_unicode), so the records equal the clean
    file's. (Google's script on TF2 stops with a UnicodeDecodeError in tf.gfile instead.)"""
    clean = pathlib.Path(SAMPLE).read_bytes()
    dirty = clean.replace(b"Text should be one-sentence-per-line",
                          b"Text sh\xffould be one-sent\xc3ence-per-line\xe2\x82")
    assert dirty != clean
    (tmp_path / "dirty.txt").write_bytes(dirty)
    config = _config_from_flags(_flags("default"))
    make_pretraining_data([str(tmp_path / "dirty.txt")], str(tmp_path / "o.tfrecord"), VOCAB, config)
    assert _decoded(tmp_path / "o.tfrecord") == _golden("default")


def test_carriage_returns_are_dropped_like_tf_gfile(tmp_path):
    """tf.gfile's readline drops every \\r (checked by hand with TensorFlow 2.21: "ab\\rcd ef\\r\\n"
    reads as "abcd ef\\n"), so CRLF files and stray CRs give the records of the file without them."""
    clean = pathlib.Path(SAMPLE).read_bytes()
    crlf = clean.replace(b"\n", b"\r\n").replace(b"one-sentence", b"one-sen\rtence\r")
    (tmp_path / "crlf.txt").write_bytes(crlf)
    config = _config_from_flags(_flags("default"))
    make_pretraining_data([str(tmp_path / "crlf.txt")], str(tmp_path / "o.tfrecord"), VOCAB, config)
    assert _decoded(tmp_path / "o.tfrecord") == _golden("default")


def test_text_that_tokenizes_to_nothing_is_an_error(tmp_path):
    (tmp_path / "in.txt").write_text("\x01\x03\n\x02\n", encoding="utf-8")
    with pytest.raises(BertDetrError, match="no text to make pretraining data from"):
        make_pretraining_data([str(tmp_path / "in.txt")], str(tmp_path / "o.tfrecord"), VOCAB,
                              PretrainingDataConfig())
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_single_sentence_documents(tmp_path):
    (tmp_path / "in.txt").write_text("One sentence only.\n\nAnother lonely line here.\n\nA third.\n")
    config = PretrainingDataConfig(dupe_factor=4, random_seed=3)
    make_pretraining_data([str(tmp_path / "in.txt")], str(tmp_path / "o.tfrecord"), VOCAB, config)
    got = _decoded(tmp_path / "o.tfrecord")
    assert len(got) == 12 and all(r["next_sentence_labels"] == [1] for r in got)


def test_one_document_of_one_sentence(tmp_path):
    """Google's 'random next' then comes from the same document (its 10-try loop gives up)."""
    (tmp_path / "in.txt").write_text("Only this.\n")
    config = PretrainingDataConfig(dupe_factor=2)
    make_pretraining_data([str(tmp_path / "in.txt")], str(tmp_path / "o.tfrecord"), VOCAB, config)
    got = _decoded(tmp_path / "o.tfrecord")
    assert got and all(r["next_sentence_labels"] == [1] for r in got)


def test_one_10mb_line(tmp_path):
    rng = random.Random(0)
    words = open(SAMPLE, encoding="utf-8").read().split()
    line = " ".join(rng.choice(words) for _ in range(1_700_000))[:10_000_000]
    path = tmp_path / "in.txt"
    path.write_text("A first line.\nAnd a second.\n\n" + line + "\n\nThird document.\nIts end.\n")
    config = PretrainingDataConfig(dupe_factor=2, max_seq_length=32)
    summary = make_pretraining_data([str(path)], str(tmp_path / "o.tfrecord"), VOCAB, config)
    got = _decoded(tmp_path / "o.tfrecord")
    assert summary.documents == 3 and summary.tokens > 2_000_000 and len(got) == summary.instances
    assert all(sum(r["input_mask"]) <= 32 for r in got)


def test_long_line_truncation_equals_google(tmp_path):
    """A 20k-token line (Google's one-at-a-time truncation is still quick enough to compare)."""
    rng = random.Random(1)
    words = open(SAMPLE, encoding="utf-8").read().split()
    path = tmp_path / "in.txt"
    path.write_text("Short one.\nShort two.\n\n" + " ".join(rng.choice(words) for _ in range(15000))
                    + "\nand more.\n\nLast doc.\n")
    config = PretrainingDataConfig(dupe_factor=3, max_seq_length=20, random_seed=8)
    make_pretraining_data([str(path)], str(tmp_path / "o.tfrecord"), VOCAB, config)
    got = _decoded(tmp_path / "o.tfrecord")
    assert got and all(sum(r["input_mask"]) <= 20 for r in got)


@pytest.mark.parametrize("length", [0, 3, 4])
def test_max_seq_length_too_small(tmp_path, capsys, length):
    with pytest.raises(BertDetrError, match=r"too small to hold \[CLS\] A \[SEP\] B \[SEP\]"):
        PretrainingDataConfig(max_seq_length=length)
    argv = ["bert", "make-data", "--input-file", SAMPLE, "--output-file", str(tmp_path / "o.tfrecord"),
            "--vocab-file", VOCAB, f"--max_seq_length={length}"]
    assert main(argv) == 2
    assert "too small" in capsys.readouterr().err
    PretrainingDataConfig(max_seq_length=5)


@pytest.mark.parametrize("kw", [dict(dupe_factor=0), dict(masked_lm_prob=1.5), dict(short_seq_prob=-0.1),
                                dict(max_predictions_per_seq=0), dict(random_seed=1.5)])
def test_bad_config(kw):
    with pytest.raises(BertDetrError):
        PretrainingDataConfig(**kw)


def test_vocab_without_mask_token(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    with pytest.raises(BertDetrError, match=r"no \[MASK\]"):
        make_pretraining_data([SAMPLE], str(tmp_path / "o.tfrecord"), str(vocab), PretrainingDataConfig())


def test_describe_example():
    config = _config_from_flags(_flags("default"))
    record = _golden("default")[0]
    words = pd.describe_example(record, TOKENIZER.inv_vocab)
    assert words["tokens"][0] == "[CLS]" and words["tokens"].count("[SEP]") == 2
    assert len(words["masked"]) == sum(1 for w in record["masked_lm_weights"] if w)
    assert config.max_seq_length == len(record["input_ids"])


# --- Google's functions, by name ------------------------------------------------------------------

def test_the_command_runs_googles_functions(tmp_path, monkeypatch):
    """make-data's path is Google's: create_training_instances -> create_instances_from_document
    -> truncate_seq_pair, create_masked_lm_predictions; then write_instance_to_example_files."""
    from bertdetr.bert.pretraining import make_data

    calls = collections.Counter()

    def counted(module, name):
        original = getattr(module, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    for name in ("create_instances_from_document", "truncate_seq_pair", "create_masked_lm_predictions"):
        counted(pd, name)
    for name in ("read_documents", "create_training_instances", "write_instance_to_example_files"):
        counted(make_data, name)
    config = _config_from_flags(_flags("wwm"))
    make_pretraining_data([SAMPLE], str(tmp_path / "o.tfrecord"), VOCAB, config)
    assert _decoded(tmp_path / "o.tfrecord") == _golden("wwm")
    assert calls["read_documents"] == calls["create_training_instances"] == 1
    assert calls["write_instance_to_example_files"] == 1
    assert calls["create_instances_from_document"] == config.dupe_factor * 3  # 3 documents
    assert calls["truncate_seq_pair"] == calls["create_masked_lm_predictions"] == len(_golden("wwm"))


def test_write_instance_to_example_files_from_instances(tmp_path, code_path):
    """Google's way round, instances first and encoded when written, gives the command's bytes."""
    config = _config_from_flags(_flags("default"))
    outputs = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
    documents, _ = pd.read_documents(SAMPLE, TOKENIZER)
    vocab = pd.VocabIds(TOKENIZER.vocab)
    instances = pd.create_training_instances(documents, config, vocab, random.Random(config.random_seed))
    assert all(isinstance(inst, pd.TrainingInstance) for inst in instances)
    encoder = ExampleEncoder(config.max_seq_length, config.max_predictions_per_seq, vocab.size)
    pd.write_instance_to_example_files(instances, outputs, encoder)
    make_pretraining_data([SAMPLE], str(tmp_path / "c.tfrecord") + "," + str(tmp_path / "d.tfrecord"),
                          VOCAB, config)
    assert (tmp_path / "a.tfrecord").read_bytes() == (tmp_path / "c.tfrecord").read_bytes()
    assert (tmp_path / "b.tfrecord").read_bytes() == (tmp_path / "d.tfrecord").read_bytes()

import json
import os
import pathlib
import random

import pytest

from bertdetr.bert import pretraining_data as pd
from bertdetr.bert.pretraining_data import (
    ExampleEncoder,
    PretrainingDataConfig,
    make_pretraining_data,
    plan_outputs,
    shard_seed,
)
from bertdetr.bert.records import iter_examples, parse_example, read_records, serialize_example
from bertdetr.bert.tokenization import FullTokenizer
from bertdetr.cli import main
from bertdetr.errors import BertDetrError

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "bert"
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

@pytest.fixture(params=["compiled", "python"])
def code_path(request, monkeypatch):
    """Runs a test on the compiled module (``bertdetr.bert._speedups``) and on the pure-Python path."""
    if request.param == "compiled":
        if pd._compiled is None:
            pytest.skip("bertdetr.bert._speedups is not built (pip install -e ., or python setup.py "
                        "build_ext --inplace)")
    else:
        monkeypatch.setattr(pd, "_compiled", None)
    return request.param


@pytest.mark.parametrize("name", ["default", "wwm"])
def test_equals_googles_records(tmp_path, name, code_path):
    """Google's script on sample_text.txt (flags in sample-*.flags), record for record."""
    out = tmp_path / "out.tfrecord"
    config = _config_from_flags(_flags(name))
    summary = make_pretraining_data([SAMPLE], str(out), VOCAB, config)
    golden = _golden(name)
    assert _decoded(out) == golden
    assert summary.instances == len(golden) and summary.documents == 3


def test_cli_with_googles_flags_and_round_robin(tmp_path, capsys):
    """Google's underscore flags as they are; comma-separated outputs get records round-robin."""
    outs = [tmp_path / f"part{i}.tfrecord" for i in range(3)]
    argv = ["bert", "make-data", f"--input_file={SAMPLE}", f"--vocab_file={VOCAB}",
            "--output_file=" + ",".join(map(str, outs)), "--no-progress", *_flags("wwm")]
    assert main(argv) == 0
    assert "58 instances in 3 file(s)" in capsys.readouterr().out
    golden = _golden("wwm")
    for i, out in enumerate(outs):
        assert _decoded(out) == golden[i::3]


def test_same_seed_same_bytes_and_encoder_matches_generic(tmp_path):
    config = _config_from_flags(_flags("default"))
    a, b = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    make_pretraining_data([SAMPLE], str(a), VOCAB, config)
    make_pretraining_data([SAMPLE], str(b), VOCAB, config)
    assert a.read_bytes() == b.read_bytes()
    # The fast encoder's bytes are the generic, sorted-key serialization of the same features.
    for data in read_records(a):
        assert serialize_example(parse_example(data)) == data


# --- against the plain port of Google's algorithm on generated input ---------------------------

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


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 8, 9, 64, 65, 300])
def test_shuffle_is_randoms(n):
    for seed in range(20):
        ours, theirs = list(range(n)), list(range(n))
        r1, r2 = random.Random(seed), random.Random(seed)
        pd._shuffle(ours, r1)
        r2.shuffle(theirs)
        assert ours == theirs and r1.random() == r2.random()


# --- the compiled module against random.Random and against the pure-Python path -----------------

needs_compiled = pytest.mark.skipif(pd._compiled is None, reason="bertdetr.bert._speedups is not built")


def _stream_ops(draws, rng, ops: random.Random, steps=2000):
    """The same random calls on ``draws`` (a Stream or _PythonDraws) and on ``rng`` (CPython's
    own methods), compared one by one."""
    for _ in range(steps):
        op = ops.randrange(7)
        if op == 0:
            assert draws.random() == rng.random()
        elif op == 1:
            n = ops.randrange(1, 2 ** ops.randrange(1, 33))
            assert draws.randbelow(n) == rng.randrange(n)
        elif op == 2:
            x = list(range(ops.randrange(300)))
            y = list(x)
            draws.shuffle(x)
            rng.shuffle(y)
            assert x == y
        elif op == 3:
            m = ops.randrange(40)
            assert draws.words(m) == rng.getrandbits(32 * m).to_bytes(4 * m, "little")
        elif op == 4 and hasattr(draws, "getrandbits"):
            k = ops.randrange(33)
            assert draws.getrandbits(k) == rng.getrandbits(k)
        elif op == 5:
            tokens = list(range(100, 130))
            chosen = ops.sample(range(30), ops.randrange(31))
            word_ids = list(range(ops.randrange(1, 40000)))
            got = draws.mask(tokens, chosen, -1, word_ids)
            assert got + (tokens,) == _googles_masking(rng, list(range(100, 130)), chosen, word_ids)
        elif op == 6:
            num_tokens = ops.randrange(3, 300)
            len_a = ops.randrange(num_tokens - 2)
            num_to_predict = ops.randrange(1, 30)
            tokens = list(range(1000, 1000 + num_tokens))
            word_ids = list(range(ops.randrange(1, 40000)))
            got = draws.masked_lm(tokens, len_a, num_to_predict, -1, word_ids)
            # Google: [CLS] and [SEP] are no candidates; shuffle; the first num_to_predict.
            candidates = [i for i in range(1, num_tokens - 1) if i != len_a + 1]
            rng.shuffle(candidates)
            expected = list(range(1000, 1000 + num_tokens))
            assert got + (tokens,) == _googles_masking(rng, expected, candidates[:num_to_predict], word_ids)


def _googles_masking(rng, tokens, chosen, word_ids):
    """(sorted positions, original tokens there, masked tokens): Google's 80/10/10 with randint."""
    positions = sorted(chosen)
    labels = [tokens[i] for i in positions]
    for index in chosen:
        if rng.random() < 0.8:
            tokens[index] = -1
        elif rng.random() < 0.5:
            pass
        else:
            tokens[index] = word_ids[rng.randint(0, len(word_ids) - 1)]
    return positions, labels, tokens


@needs_compiled
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40 + 3])
def test_stream_continues_randoms_stream(seed):
    rng, ours = random.Random(seed), random.Random(seed)
    for _ in range(seed % 7):  # start mid-block too
        rng.random(), ours.random()
    stream = pd._compiled.Stream(ours.getstate()[1])
    _stream_ops(stream, rng, random.Random(seed + 1))
    assert stream.getstate() == rng.getstate()[1]


def test_python_draws_are_randoms():
    for seed in range(3):
        rng = random.Random(seed)
        ours = random.Random(seed)
        _stream_ops(pd._PythonDraws(ours), rng, random.Random(seed + 1), steps=500)
        assert ours.getstate() == rng.getstate()


def test_draws_hand_the_state_back(code_path):
    """After the block, the rng is where random.Random's own calls would have left it."""
    rng, reference = random.Random(3), random.Random(3)
    reference.gauss(0, 1)  # a pending gauss_next is kept too
    rng.gauss(0, 1)
    with pd._draws_of(rng) as draws:
        assert isinstance(draws, pd._PythonDraws) == (code_path == "python")
        x, y = list(range(50)), list(range(50))
        draws.shuffle(x)
        reference.shuffle(y)
        assert x == y and draws.random() == reference.random()
    assert rng.getstate() == reference.getstate()


@needs_compiled
def test_stream_rejects_bad_input():
    stream = pd._compiled.Stream(random.Random(0).getstate()[1])
    for bad in (0, -1, 2**32, 2**70):
        with pytest.raises((ValueError, OverflowError)):
            stream.randbelow(bad)
    with pytest.raises(ValueError):
        stream.getrandbits(33)
    with pytest.raises(TypeError):
        stream.shuffle((1, 2))
    with pytest.raises(IndexError):
        stream.mask([1, 2], [2], 0, [5])
    with pytest.raises(ValueError):
        stream.mask([1, 2], [1], 0, [])
    with pytest.raises(ValueError):
        stream.masked_lm([1, 2, 3, 4], 2, 1, 0, [5])  # len_a + 3 > len(tokens)
    state = random.Random(0).getstate()[1]
    for bad in (state[:-1], state[:-1] + (625,), (2**32,) + state[1:]):
        with pytest.raises(ValueError):
            pd._compiled.Stream(bad)


@needs_compiled
def test_varints():
    from bertdetr.bert.records import encode_varint

    rng = random.Random(0)
    for _ in range(500):
        ids = [rng.randrange(2 ** rng.randrange(1, 33)) for _ in range(rng.randrange(60))]
        assert pd._compiled.varints(ids) == b"".join(map(encode_varint, ids))
    for bad in ([2**32], [-1]):
        with pytest.raises(OverflowError):
            pd._compiled.varints(bad)
    # Any sequence of ints or of objects with __index__, as the table path takes.
    import numpy as np

    ids = [0, 127, 128, 30521, 2**32 - 1]
    expected = b"".join(map(encode_varint, ids))
    assert pd._compiled.varints(tuple(ids)) == expected
    assert pd._compiled.varints(np.array(ids, dtype=np.int64)) == expected
    with pytest.raises(TypeError):
        pd._compiled.varints([1.0])


@needs_compiled
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
    monkeypatch.setattr(pd, "_compiled", None)
    make_pretraining_data([str(path)], ",".join(map(str, python)), VOCAB, config)
    for c, p in zip(compiled, python):
        assert c.read_bytes() and c.read_bytes() == p.read_bytes()


def _shards(tmp_path, n=3):
    rng = random.Random(5)
    paths = []
    for i in range(n):
        p = tmp_path / "in" / f"part{i}.txt"
        p.parent.mkdir(exist_ok=True)
        _random_corpus(rng, p, num_docs=3)
        paths.append(str(p))
    return paths


def test_each_shard_equals_a_run_on_that_file_alone(tmp_path):
    paths = _shards(tmp_path)
    config = PretrainingDataConfig(dupe_factor=2, max_seq_length=32, random_seed=99)
    summary = make_pretraining_data([str(tmp_path / "in" / "part*.txt")],
                                    str(tmp_path / "out" / "{index:03d}-{name}.tfrecord"), VOCAB, config)
    assert summary.outputs == [str(tmp_path / "out" / f"{i:03d}-part{i}.tfrecord") for i in range(3)]
    for i, path in enumerate(paths):
        alone = tmp_path / f"alone{i}.tfrecord"
        seeded = PretrainingDataConfig(dupe_factor=2, max_seq_length=32, random_seed=shard_seed(99, i))
        make_pretraining_data([path], str(alone), VOCAB, seeded)
        assert alone.read_bytes() == pathlib.Path(summary.outputs[i]).read_bytes()
    assert shard_seed(99, 0) == 99


def test_workers_and_shard_selection_give_the_same_files(tmp_path):
    paths = _shards(tmp_path, n=3)
    config = PretrainingDataConfig(dupe_factor=1, max_seq_length=32)
    make_pretraining_data(paths, str(tmp_path / "one" / "{index}.tfrecord"), VOCAB, config)
    two = make_pretraining_data(paths, str(tmp_path / "two") + "/", VOCAB, config, workers=2, progress=True)
    assert [os.path.basename(p) for p in two.outputs] == [f"{i:05d}-part{i}.tfrecord" for i in range(3)]
    picked = make_pretraining_data(paths, str(tmp_path / "sel" / "{index}.tfrecord"), VOCAB, config,
                                   shard_index=1, num_shards=2)
    assert picked.inputs == [paths[1]]
    assert sorted(os.listdir(tmp_path / "sel")) == ["1.tfrecord"]
    for i in range(3):
        one = (tmp_path / "one" / f"{i}.tfrecord").read_bytes()
        assert one == pathlib.Path(two.outputs[i]).read_bytes()
    assert (tmp_path / "sel" / "1.tfrecord").read_bytes() == (tmp_path / "one" / "1.tfrecord").read_bytes()


def test_error_in_a_worker_reaches_the_caller(tmp_path):
    paths = _shards(tmp_path, n=2)
    bad = tmp_path / "in" / "part2.txt"
    bad.write_text("\x01\x02\n")  # not blank, but no tokens
    with pytest.raises(BertDetrError, match="part2.txt: no text to make pretraining data from"):
        make_pretraining_data([*paths, str(bad)], str(tmp_path / "out" / "{index}.tfrecord"), VOCAB,
                              PretrainingDataConfig(dupe_factor=1), workers=2)
    assert not (tmp_path / "out" / "2.tfrecord").exists()


def test_output_planning():
    assert plan_outputs(["a.txt"], "x.tfrecord,y.tfrecord") == [["x.tfrecord", "y.tfrecord"]]
    assert plan_outputs(["d/a.txt", "e/b.txt"], "o/{name}-{index}of{num_inputs}.tfrecord") == [
        ["o/a-0of2.tfrecord"], ["o/b-1of2.tfrecord"]]
    with pytest.raises(BertDetrError, match="need an output template"):
        plan_outputs(["a.txt", "b.txt"], "x.tfrecord")
    with pytest.raises(BertDetrError, match="planned twice"):
        plan_outputs(["d/a.txt", "e/a.txt"], "o/{name}.tfrecord")
    with pytest.raises(BertDetrError, match="bad output template"):
        plan_outputs(["a.txt", "b.txt"], "o/{shard}.tfrecord")


# --- bad input --------------------------------------------------------------------------------

def test_missing_input_is_named_before_any_work(tmp_path, capsys):
    out = tmp_path / "out.tfrecord"
    argv = ["bert", "make-data", "--input-file", f"{SAMPLE},{tmp_path / 'missing.txt'}",
            "--output-file", str(tmp_path / "{index}.tfrecord"), "--vocab-file", VOCAB]
    assert main(argv) == 2
    assert f"matches no file: {tmp_path / 'missing.txt'}" in capsys.readouterr().err
    assert not out.exists() and os.listdir(tmp_path) == []


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


@pytest.mark.parametrize("content", [b"", b"\n\n  \n\t\n\r\n"])
def test_empty_or_blank_input_is_an_error_and_writes_nothing(tmp_path, capsys, content):
    (tmp_path / "in.txt").write_bytes(content)
    argv = ["bert", "make-data", "--input-file", str(tmp_path / "in.txt"),
            "--output-file", str(tmp_path / "o.tfrecord"), "--vocab-file", VOCAB]
    assert main(argv) == 2
    assert "has no text" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


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


def test_unwritable_output_fails_before_work(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    calls = []
    monkeypatch.setattr(pd, "read_documents", lambda *a, **k: calls.append(a))
    with pytest.raises(BertDetrError, match="cannot write output"):
        make_pretraining_data([SAMPLE], str(blocker / "o.tfrecord"), VOCAB, PretrainingDataConfig())
    assert calls == []


def test_vocab_without_mask_token(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    with pytest.raises(BertDetrError, match=r"no \[MASK\]"):
        make_pretraining_data([SAMPLE], str(tmp_path / "o.tfrecord"), str(vocab), PretrainingDataConfig())


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_no_partial_file(tmp_path, monkeypatch, exc):
    final = tmp_path / "o.tfrecord"
    final.write_bytes(b"older complete file")
    original = pd._write_round_robin

    def interrupted(records, outputs):
        class Boom:
            def __len__(self):
                return len(records)

            def __getitem__(self, item):
                raise exc("interrupted mid-write")

        original(Boom(), outputs)

    monkeypatch.setattr(pd, "_write_round_robin", interrupted)
    with pytest.raises(exc):
        make_pretraining_data([SAMPLE], f"{tmp_path / 'a.tfrecord'},{final}", VOCAB,
                              PretrainingDataConfig(dupe_factor=1))
    assert sorted(os.listdir(tmp_path)) == ["o.tfrecord"]
    assert final.read_bytes() == b"older complete file"


def test_cli_keyboard_interrupt_exit_code(tmp_path, monkeypatch, capsys):
    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd, "_write_round_robin", stop)
    argv = ["bert", "make-data", "--input-file", SAMPLE, "--output-file", str(tmp_path / "o.tfrecord"),
            "--vocab-file", VOCAB, "--dupe-factor", "1", "--no-progress"]
    assert main(argv) == 130
    assert os.listdir(tmp_path) == []


def test_cli_boolean_flags(tmp_path, capsys):
    base = ["bert", "make-data", "--input-file", SAMPLE, "--vocab-file", VOCAB, "--dupe-factor", "1",
            "--max-seq-length", "32", "--no-progress"]
    for extra in (["--do_lower_case=False"], ["--nodo_lower_case"], ["--do-lower-case", "false"]):
        assert main([*base, "--output-file", str(tmp_path / "c.tfrecord"), *extra]) == 0
        cased = _decoded(tmp_path / "c.tfrecord")
        assert main([*base, "--output-file", str(tmp_path / "u.tfrecord"), "--do-lower-case"]) == 0
        assert cased != _decoded(tmp_path / "u.tfrecord")
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        main([*base, "--output-file", str(tmp_path / "w.tfrecord"), "--do_whole_word_mask=maybe"])
    assert exit_info.value.code == 2
    out = capsys.readouterr().out
    assert "1 input file(s): 3 documents" in out


def test_describe_example():
    config = _config_from_flags(_flags("default"))
    record = _golden("default")[0]
    words = pd.describe_example(record, TOKENIZER.inv_vocab)
    assert words["tokens"][0] == "[CLS]" and words["tokens"].count("[SEP]") == 2
    assert len(words["masked"]) == sum(1 for w in record["masked_lm_weights"] if w)
    assert config.max_seq_length == len(record["input_ids"])


def test_encoder_positions_beyond_128():
    enc = ExampleEncoder(300, 4, 30522)
    inst = pd.TrainingInstance([101] + [2000] * 250 + [102, 2001, 102], 250, [1, 200, 251], [2000, 2000, 102],
                               True)
    got = parse_example(enc.encode(inst))
    assert got["masked_lm_positions"].tolist() == [1, 200, 251, 0]
    assert got["segment_ids"].tolist() == [0] * 252 + [1] * 2 + [0] * 46

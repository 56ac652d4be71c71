"""``tokenize_lines`` / ``encode_batch`` of ``bench/tokenize_workers.py`` (what the tokenizer benchmark
measures as "ours"): batches of lines on this process and on worker processes, the same output and
errors as line by line."""

import multiprocessing

import pytest

import importlib.util
import pathlib
import sys
from bertdetr.bert.data.tokenization import BasicTokenizer, FullTokenizer

from tests.bert.data.test_tokenization import VOCAB, VOCAB_FILE, _golden, _pair


def _load_bench_module(name):
    path = pathlib.Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # worker processes unpickle its functions by module name
    spec.loader.exec_module(module)
    return module


tokenize_workers = _load_bench_module("tokenize_workers")


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("batch_lines", [4, None])
def test_tokenize_lines_and_encode_batch(monkeypatch, workers, batch_lines):
    monkeypatch.setattr(tokenize_workers, "PARALLEL_MIN_CHARS", 0)  # workers even for this short input
    monkeypatch.setattr(tokenize_workers, "BATCH_CHARS", 300)  # and several batches
    ours, google = _pair(True)
    lines = [r["text"] for r in _golden(VOCAB_FILE.parent.parent, "uncased")] + ["", b"caf\xc3\xa9"]
    expected = [google.tokenize(line) for line in lines]
    assert list(tokenize_workers.tokenize_lines(ours, lines, workers=workers, batch_lines=batch_lines)) == expected
    assert tokenize_workers.encode_batch(ours, iter(lines), workers=workers) == [
        google.convert_tokens_to_ids(tokens) for tokens in expected
    ]


# Lines that a worker gets joined into one string (or bytes) and splits again by their lengths:
# separators inside a line, invalid UTF-8 (dropped per line, as Google), an empty line.
_AWKWARD_LINES = [
    "two\nlines in one", "tab\tand\x0bvertical tab", "para\u2029graph", "", " ", "Ünïcödé ＡＢＣ 中文",
    "a\r\nb", "\x85next line",
]
_AWKWARD_BYTES = [b"caf\xc3\xa9", b"\xff\xfebad \xc3", b"", b"split \xc3", b"\xa9 mid-character", b"a\nb"]


@pytest.mark.parametrize(
    "lines",
    [
        [],  # empty input
        ["just one line"],  # fewer lines than workers
        ["one", "two"],
        _AWKWARD_LINES * 3,
        _AWKWARD_BYTES * 3,  # all bytes: joined as bytes, decoded line by line in the worker
        (_AWKWARD_LINES + _AWKWARD_BYTES) * 3,  # mixed: such a batch is tokenized in this process
    ],
)
@pytest.mark.parametrize("to_ids", [False, True])
def test_several_workers_same_as_one(monkeypatch, lines, to_ids):
    monkeypatch.setattr(tokenize_workers, "PARALLEL_MIN_CHARS", 0)
    expected = list(tokenize_workers.tokenize_lines(FullTokenizer._from_vocab(VOCAB, True), lines, to_ids=to_ids))
    assert len(expected) == len(lines)
    for workers in (2, 4):
        for batch_lines in (1, 5, None):
            ours = FullTokenizer._from_vocab(VOCAB, True)
            got = list(tokenize_workers.tokenize_lines(ours, lines, workers=workers, to_ids=to_ids, batch_lines=batch_lines))
            assert got == expected, (workers, batch_lines)


@pytest.mark.parametrize("to_ids", [False, True])
def test_worker_loop_packs_and_unpacks(to_ids):
    """A worker's side in this process (with thread queues), ids beyond 16 bits included."""
    import gc
    import queue

    vocab = {"[UNK]": 0, "hello": 70_000, "world": 65_535}
    lines = ["Hello world", "", "world, hello"]
    tasks, finished = queue.Queue(), queue.Queue()
    tasks.put((7, *tokenize_workers._join_lines(lines)))
    tasks.put(None)
    try:
        tokenize_workers._worker_loop(FullTokenizer._from_vocab(vocab, True), to_ids, tasks, finished)
    finally:
        gc.enable()  # the worker loop turns the collector off for its process
    number, packed = finished.get_nowait()
    expected = [[70_000, 65_535], [], [65_535, 0, 70_000]] if to_ids else [
        ["hello", "world"], [], ["world", "[UNK]", "hello"]
    ]
    assert number == 7 and tokenize_workers._lines_of(packed) == expected


def test_several_workers_on_many_batches(monkeypatch):
    """Many small batches: workers kept busy, this process tokenizing and taking back batches."""
    monkeypatch.setattr(tokenize_workers, "BATCH_CHARS", 2000)
    monkeypatch.setattr(tokenize_workers, "PARALLEL_MIN_CHARS", 10_000)
    words = [r["text"] for r in _golden(VOCAB_FILE.parent.parent, "uncased")]
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(i % 5)) for i in range(6000)]
    expected = tokenize_workers.encode_batch(FullTokenizer._from_vocab(VOCAB, True), lines)
    assert tokenize_workers.encode_batch(FullTokenizer._from_vocab(VOCAB, True), iter(lines), workers=2) == expected
    ours = FullTokenizer._from_vocab(VOCAB, True)
    assert [ours.convert_tokens_to_ids(t) for t in tokenize_workers.tokenize_lines(ours, lines, workers=3)] == expected
    assert not multiprocessing.active_children()  # all workers have ended


def test_short_input_starts_no_worker(monkeypatch):
    def no_workers(*args):
        raise AssertionError("a worker was started for a short input")

    monkeypatch.setattr(tokenize_workers, "_ParallelRun", no_workers)
    ours, google = _pair(True)
    lines = ["A short input.", "Below parallel_min_chars."] * 10
    assert tokenize_workers.encode_batch(ours, lines, workers=2) == [google.convert_tokens_to_ids(google.tokenize(x)) for x in lines]


@pytest.mark.parametrize("workers", [1, 2])
def test_errors_raised_after_the_lines_before_them(monkeypatch, workers):
    monkeypatch.setattr(tokenize_workers, "PARALLEL_MIN_CHARS", 0)
    # Not text, in a batch that this process tokenizes (str and int lines: not sent to a worker).
    lines = ["fine", "also fine", "more", 42, "after"]
    got = []
    with pytest.raises(TypeError, match="Unsupported string type"):
        for tokens in tokenize_workers.tokenize_lines(FullTokenizer._from_vocab(VOCAB, True), lines, workers=workers, batch_lines=2):
            got.append(tokens)
    assert got == [["fine"], ["also", "fine"], ["more"]]
    # A line that fails in a worker (the patched function is inherited by the forked worker).
    concat_chunks = BasicTokenizer.concat_chunks

    def failing(of_chunk, text):
        if text == "boom":
            raise ValueError("boom")
        return concat_chunks(of_chunk, text)

    monkeypatch.setattr(BasicTokenizer, "concat_chunks", staticmethod(failing))
    got = []
    with pytest.raises(ValueError, match="boom"):
        for ids in tokenize_workers.tokenize_lines(
            FullTokenizer._from_vocab(VOCAB, True), ["a", "b", "boom", "c"], workers=workers, to_ids=True,
            batch_lines=3,
        ):
            got.append(ids)
    assert got == [[VOCAB["a"]], [VOCAB["b"]]]
    assert not multiprocessing.active_children()


def test_stopping_early_ends_the_workers(monkeypatch):
    monkeypatch.setattr(tokenize_workers, "PARALLEL_MIN_CHARS", 0)
    lines = ["some words here"] * 5000
    stream = tokenize_workers.tokenize_lines(FullTokenizer._from_vocab(VOCAB, True), lines, workers=2, batch_lines=100)
    assert next(stream) == ["some", "words", "here"]
    assert multiprocessing.active_children()
    stream.close()
    assert not multiprocessing.active_children()

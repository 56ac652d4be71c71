"""The fast ``make-data`` against the plain reference (``bench/reference_pretraining_data.py``).

The reference is checked against Google's golden records here; the fast implementation is then
compared with it record for record on generated corpora and many flag sets, through both of its
truncation paths, and on the state it leaves the random stream in (the same draws, none extra).
"""

import importlib.util
import pathlib
import random
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertdetr.bert.pretraining import draws
from bertdetr.bert.pretraining import create_pretraining_data as pd
from bertdetr.bert.pretraining.make_data import make_pretraining_data
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.bert.data.tokenization import FullTokenizer, load_vocab

from tests.bert.pretraining.test_create_pretraining_data import _config_from_flags, _decoded, _flags, _golden

ROOT = pathlib.Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "bert"
VOCAB_FILE = str(DATA / "vocab-uncased.txt")
VOCAB = load_vocab(VOCAB_FILE)


def _load_bench_module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


reference = _load_bench_module("reference_pretraining_data")
reference_tokenization = _load_bench_module("reference_tokenization")
# The reference runs on the plain reference tokenizer, so nothing of the fast code is shared.
REFERENCE_TOKENIZERS = {lower: reference_tokenization.FullTokenizer(None, lower, vocab=VOCAB)
                        for lower in (True, False)}
FAST_TOKENIZERS = {lower: FullTokenizer._from_vocab(VOCAB, lower) for lower in (True, False)}


def _reference_records(path, config: PretrainingDataConfig):
    """(records, the reference's random stream after the run)."""
    rng = random.Random(config.random_seed)
    tokenizer = REFERENCE_TOKENIZERS[config.do_lower_case]
    return reference.make_records(path, tokenizer, config, rng), rng


def _fast_instances(path, config: PretrainingDataConfig):
    """The fast implementation's instances of ``path`` (finally shuffled) as records, and its
    random stream after them."""
    tokenizer = FAST_TOKENIZERS[config.do_lower_case]
    documents, _ = pd.read_documents(path, tokenizer)
    rng = random.Random(config.random_seed)
    instances = pd.create_training_instances(documents, config, pd.VocabIds(tokenizer.vocab), rng)
    return [_features(inst, config) for inst in instances], rng


def _features(inst, config):
    """A fast ``TrainingInstance`` as the reference's decoded-record dict."""
    def padded(values, size):
        return list(values) + [0] * (size - len(values))

    n, m = len(inst.input_ids), len(inst.masked_lm_positions)
    return {
        "input_ids": padded(inst.input_ids, config.max_seq_length),
        "input_mask": padded([1] * n, config.max_seq_length),
        "segment_ids": padded(inst.segment_ids, config.max_seq_length),
        "masked_lm_positions": padded(inst.masked_lm_positions, config.max_predictions_per_seq),
        "masked_lm_ids": padded(inst.masked_lm_ids, config.max_predictions_per_seq),
        "masked_lm_weights": [1.0] * m + [0.0] * (config.max_predictions_per_seq - m),
        "next_sentence_labels": [1 if inst.is_random_next else 0],
    }


# --- the reference against Google's own output ------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "wwm"])
def test_reference_equals_googles_records(name):
    config = _config_from_flags(_flags(name))
    golden = _golden(name)
    records, rng = _reference_records(DATA / "sample_text.txt", config)
    assert records == golden
    # ...and the fast implementation leaves the stream where the reference does.
    fast_records, fast_rng = _fast_instances(DATA / "sample_text.txt", config)
    assert fast_records == golden
    assert fast_rng.getstate() == rng.getstate()


# --- the fast implementation against the reference on generated corpora ------------------------------

# Flag sets (PretrainingDataConfig fields; the seed is drawn per trial). Tiny max_seq_length with the generated long
# sentences makes truncation remove many tokens (the bulk path); larger ones remove few (the loop).
CASES = [
    dict(max_seq_length=128, dupe_factor=2),
    dict(max_seq_length=12, short_seq_prob=0.0, do_whole_word_mask=True),
    dict(max_seq_length=16, short_seq_prob=0.5, masked_lm_prob=0.5, max_predictions_per_seq=5,
         do_whole_word_mask=True, dupe_factor=2),
    dict(max_seq_length=20, max_predictions_per_seq=2, dupe_factor=3, do_lower_case=False),
    dict(max_seq_length=5, max_predictions_per_seq=3, masked_lm_prob=1.0, dupe_factor=2),
    dict(max_seq_length=24, masked_lm_prob=1.0, max_predictions_per_seq=30, do_whole_word_mask=True),
    dict(max_seq_length=40, masked_lm_prob=0.0, short_seq_prob=0.5, do_whole_word_mask=True,
         do_lower_case=False),
    dict(max_seq_length=64, masked_lm_prob=0.125, max_predictions_per_seq=10, do_whole_word_mask=True,
         dupe_factor=3),  # 0.125 * an even length ending in .5: Python's round to even
    dict(max_seq_length=200, max_predictions_per_seq=5, short_seq_prob=0.0),  # positions > 127
    dict(max_seq_length=32, short_seq_prob=1.0, do_whole_word_mask=True, dupe_factor=2),
    dict(max_seq_length=18, short_seq_prob=0.0, masked_lm_prob=0.3, max_predictions_per_seq=4,
         do_lower_case=False, do_whole_word_mask=True, dupe_factor=2),
]
NUM_DOCUMENTS = [1, 2, 7]  # one trial per count; a one-document corpus takes "random next" from itself


def _trials(case_index, tmp_path):
    """(input file, config) of each trial of a case; the same every time (seeded by the case)."""
    draw = random.Random(7000 + case_index)
    for trial, num_documents in enumerate(NUM_DOCUMENTS):
        path = tmp_path / f"case{case_index}-{trial}.txt"
        path.write_text(reference.generated_corpus(draw, num_documents), encoding="utf-8")
        yield path, PretrainingDataConfig(random_seed=draw.randint(-5, 10**9), **CASES[case_index])


# Truncation modes of the fast implementation: as shipped, every truncation through the
# one-draw-per-step loop, every truncation through the one bulk draw.
TRUNCATION_MODES = {"default": None, "loop": 10**9, "bulk": 0}


@pytest.mark.parametrize("case_index", range(len(CASES)))
def test_fast_equals_reference_on_generated_corpora(tmp_path, monkeypatch, case_index):
    for path, config in _trials(case_index, tmp_path):
        expected, rng = _reference_records(path, config)
        assert expected, "every generated corpus has text"
        for mode, threshold in TRUNCATION_MODES.items():
            with monkeypatch.context() as patch:
                if threshold is not None:
                    patch.setattr(pd, "_SHORT_TRUNCATION", threshold)
                out = tmp_path / f"{path.stem}-{mode}.tfrecord"
                make_pretraining_data([str(path)], str(out), VOCAB_FILE, config)
                assert _decoded(out) == expected, (mode, config)
                instances, fast_rng = _fast_instances(path, config)
                assert instances == expected, (mode, config)
                assert fast_rng.getstate() == rng.getstate(), (mode, config)


def test_generated_cases_reach_both_truncation_paths(tmp_path, monkeypatch):
    """The cases above truncate by a few tokens (the loop) and by many (the bulk draw), with
    either segment the longer one and with more steps than the length difference (both segments
    shortened in the bulk path); and their "##" pieces do get grouped by whole-word masking."""
    seen = []
    original = pd.truncate_seq_pair

    def spy(tokens_a, tokens_b, max_num_tokens, rng):
        len_a, len_b = len(tokens_a), len(tokens_b)
        seen.append((len_a, len_b, len_a + len_b - max_num_tokens))
        return original(tokens_a, tokens_b, max_num_tokens, rng)

    monkeypatch.setattr(pd, "truncate_seq_pair", spy)
    pieces = 0
    for case_index in range(len(CASES)):
        for path, config in _trials(case_index, tmp_path):
            make_pretraining_data([str(path)], str(tmp_path / "o.tfrecord"), VOCAB_FILE, config)
            pieces += sum(t.startswith("##") for t in FAST_TOKENIZERS[True].tokenize(path.read_text()))
    assert seen, "pd.truncate_seq_pair is no longer called: update this test to the truncation code"
    short = [s for s in seen if 0 < s[2] < pd._SHORT_TRUNCATION]
    bulk = [s for s in seen if s[2] >= pd._SHORT_TRUNCATION]
    assert short and bulk
    assert any(a > b for a, b, _ in bulk) and any(a <= b for a, b, _ in bulk)
    assert any(excess > abs(a - b) + 1 for a, b, excess in bulk)
    assert any(excess > abs(a - b) + 1 for a, b, excess in short)
    assert pieces > 100


# --- the same, generated by hypothesis ---------------------------------------------------------------

# Documents straight from word pieces (no tokenizer): "##" pieces anywhere, even opening a sentence
# or a document, which the tokenizer never produces. [CLS]/[SEP] are left out: the tokenizer cannot
# produce them either (it splits off "[" and "]"), and the fast code counts on it.
PIECES = ["the", "cat", "sat", ".", "una", "##ffa", "##ble", "token", "##ization", "[UNK]", "[MASK]",
          "東", "##s", "##ness", "hyper", "##para", "##meter"]
SENTENCES = st.lists(st.sampled_from(PIECES), min_size=1, max_size=12) | st.lists(
    st.sampled_from(PIECES), min_size=30, max_size=90)
DOCUMENTS = st.lists(st.lists(SENTENCES, min_size=1, max_size=6), min_size=1, max_size=5)
CONFIGS = st.builds(
    PretrainingDataConfig,
    random_seed=st.integers(0, 2**32),
    max_seq_length=st.integers(5, 48),
    max_predictions_per_seq=st.integers(1, 25),
    dupe_factor=st.integers(1, 3),
    masked_lm_prob=st.sampled_from([0.0, 0.1, 0.125, 0.15, 0.5, 1.0]),
    short_seq_prob=st.sampled_from([0.0, 0.5, 1.0]),
    do_whole_word_mask=st.booleans(),
)
GENERATED = settings(max_examples=120, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])


# A small vocabulary of a drawn size: random replacement words are drawn with rejection sampling
# from len(vocab), so an off-by-one there only shows when len(vocab) is just above a power of two
# now and then; with 30522 words it almost never would.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCABS = st.integers(0, 40).map(lambda extra: {
    token: i for i, token in enumerate(SPECIALS + [p for p in PIECES if p not in SPECIALS]
                                       + [f"[unused{k}]" for k in range(extra)])})


@GENERATED
@given(documents=DOCUMENTS, config=CONFIGS, vocab=VOCABS, threshold=st.sampled_from([0, 8, 10**9]))
def test_fast_instances_equal_reference_on_generated_documents(documents, config, vocab, threshold):
    rng = random.Random(config.random_seed)
    expected = [reference.to_features(inst, vocab, config)
                for inst in reference.create_instances(documents, config, list(vocab), rng)]

    ids = [[[vocab[p] for p in sentence] for sentence in document] for document in documents]
    fast_rng = random.Random(config.random_seed)
    saved = pd._SHORT_TRUNCATION
    pd._SHORT_TRUNCATION = threshold  # (not monkeypatch: hypothesis reruns the body many times)
    try:
        instances = pd.create_training_instances(ids, config, pd.VocabIds(vocab), fast_rng)
    finally:
        pd._SHORT_TRUNCATION = saved
    assert [_features(inst, config) for inst in instances] == expected
    assert fast_rng.getstate() == rng.getstate()


@GENERATED
@given(len_a=st.integers(1, 120), len_b=st.integers(1, 120), max_num_tokens=st.integers(2, 130),
       seed=st.integers(0, 2**32), threshold=st.sampled_from([0, 8, 10**9]),
       compiled=st.booleans())
def test_truncation_equals_reference_trimming(len_a, len_b, max_num_tokens, seed, threshold, compiled):
    tokens_a, tokens_b = list(range(len_a)), list(range(1000, 1000 + len_b))
    rng = random.Random(seed)
    reference.trim_pair(tokens_a, tokens_b, max_num_tokens, rng)

    fast_rng = random.Random(seed)
    ours_a, ours_b = list(range(len_a)), list(range(1000, 1000 + len_b))
    saved = pd._SHORT_TRUNCATION
    pd._SHORT_TRUNCATION = threshold
    try:
        if compiled:  # the C module's draws when it is built (else the pure-Python ones again)
            with draws.draws_of(fast_rng) as fast_draws:
                ours_a, ours_b = pd.truncate_seq_pair(ours_a, ours_b, max_num_tokens, fast_draws)
        else:
            ours_a, ours_b = pd.truncate_seq_pair(ours_a, ours_b, max_num_tokens, draws.PythonDraws(fast_rng))
    finally:
        pd._SHORT_TRUNCATION = saved
    assert (ours_a, ours_b) == (tokens_a, tokens_b)
    assert fast_rng.getstate() == rng.getstate()

"""RoBERTa-style pretraining: make-data --no-next-sentence (sequences of whole sentences, no NSP),
make-data --dynamic-masking (unmasked records, the trainer masks every batch with Google's rules,
resumably), and bert pretrain on them (masked LM alone without NSP records)."""

import json
import os

import numpy as np
import torch
import pytest

from bertdetr.bert.data.records import iter_examples, read_records
from bertdetr.bert.data.tokenization import FullTokenizer, load_vocab
from bertdetr.bert.model import BertConfig
from bertdetr.bert.pretraining import create_pretraining_data as pd
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.bert.pretraining.dataset import decode_batch, inspect_records
from bertdetr.bert.pretraining.roberta import DynamicMasking
from bertdetr.bert.pretraining.make_data import make_pretraining_data
from bertdetr.bert.pretraining.pretrain import PretrainConfig, pretrain
from bertdetr.errors import BertDetrError

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
SAMPLE = os.path.join(DATA, "sample_text.txt")
VOCAB = os.path.join(DATA, "vocab-uncased.txt")
VOCAB_IDS = load_vocab(VOCAB)
TOKENIZER = FullTokenizer(VOCAB)
CLS, SEP, MASK = VOCAB_IDS["[CLS]"], VOCAB_IDS["[SEP]"], VOCAB_IDS["[MASK]"]


def _documents():
    documents, _ = pd.read_documents(SAMPLE, TOKENIZER)
    return documents


def _records(tmp_path, name, **flags):
    out = tmp_path / f"{name}.tfrecord"
    make_pretraining_data([SAMPLE], str(out), VOCAB, PretrainingDataConfig(max_seq_length=64, **flags))
    return str(out), [{k: [int(x) for x in v] if k != "masked_lm_weights" else list(v) for k, v in e.items()}
                      for e in iter_examples(out)]


def _restored(record):
    ids = list(record["input_ids"][:sum(record["input_mask"])])
    for p, i, w in zip(record.get("masked_lm_positions", []), record.get("masked_lm_ids", []),
                       record.get("masked_lm_weights", [])):
        if w:
            ids[p] = i
    return ids


def _is_run_of_sentences(tokens, documents):
    """Whether ``tokens`` is consecutive whole sentences of one document (or such a run truncated
    at its ends, when it was longer than the sequence)."""
    for document in documents:
        for start in range(len(document)):
            run = []
            for sentence in document[start:]:
                run += sentence
                if len(run) >= len(tokens):
                    break
            text = " ".join(map(str, run))
            if run[:len(tokens)] == tokens or f" {' '.join(map(str, tokens))} " in f" {text} ":
                return True
    return False


@pytest.mark.parametrize("cross", [True, False], ids=["full-sentences", "doc-sentences"])
def test_no_next_sentence_records_are_runs_of_whole_sentences(tmp_path, cross):
    path, records = _records(tmp_path, "no-nsp", next_sentence=False, cross_documents=cross, dupe_factor=2)
    assert records and all(sorted(r) == ["input_ids", "input_mask", "masked_lm_ids", "masked_lm_positions",
                                         "masked_lm_weights", "segment_ids"] for r in records)
    documents = _documents()
    inner_seps = 0
    for r in records:
        n = sum(r["input_mask"])
        ids = _restored(r)
        assert ids[0] == CLS and ids[-1] == SEP and set(r["segment_ids"]) == {0}
        seps = [i for i in range(1, n - 1) if ids[i] == SEP]  # between documents (FULL-SENTENCES)
        inner_seps += len(seps)
        bounds = [0, *seps, n - 1]
        for a, b in zip(bounds, bounds[1:]):
            assert b > a + 1 and _is_run_of_sentences(ids[a + 1:b], documents)
        masked = sum(r["masked_lm_weights"])
        assert masked == min(20, max(1, round(n * 0.15)))  # Google's count, half to even
        assert all(0 < p < n - 1 and p not in seps
                   for p, w in zip(r["masked_lm_positions"], r["masked_lm_weights"]) if w)
    # sequences fill up across documents, or stop at each document's end
    assert (inner_seps >= 2) if cross else inner_seps == 0
    if cross:
        assert sum(sum(r["input_mask"]) for r in records) / len(records) > 60  # nearly all full (64)
    shape = inspect_records([path])
    assert not shape.next_sentence and not shape.dynamic


def test_dynamic_records_are_unmasked_with_their_word_marks(tmp_path):
    path, records = _records(tmp_path, "dynamic", dynamic_masking=True, do_whole_word_mask=True, dupe_factor=1)
    assert all(sorted(r) == ["input_ids", "input_mask", "next_sentence_labels", "segment_ids", "word_continues"]
               for r in records)
    inv = {i: t for t, i in VOCAB_IDS.items()}
    documents = _documents()
    flat = [" ".join(map(str, sum(d, []))) for d in documents]
    for r in records:
        n = sum(r["input_mask"])
        ids = r["input_ids"][:n]
        assert MASK not in ids
        sep = ids.index(SEP)
        a = ids[1:sep]
        assert any(" ".join(map(str, a)) in text for text in flat)  # A is text of one document, unmasked
        expected = [1 if 0 < i < n - 1 and i != sep and inv[t].startswith("##") else 0 for i, t in enumerate(ids)]
        assert r["word_continues"][:n] == expected
    shape = inspect_records([path])
    assert shape.dynamic and shape.whole_words and shape.next_sentence


def _masking(prob=0.15, predictions=20):
    return DynamicMasking(VOCAB_IDS, prob, predictions)


def _batch(records, names=("input_ids", "input_mask", "word_continues")):
    return {k: np.array([r[k] for r in records], dtype=np.int64) for k in names if k in records[0]}


def test_dynamic_masking_follows_googles_rules(tmp_path):
    _, records = _records(tmp_path, "dyn", dynamic_masking=True, do_whole_word_mask=True, dupe_factor=3)
    batch = _batch(records)
    rng = np.random.default_rng(0)
    kinds = np.zeros(3)
    for _ in range(20):
        out = _masking().mask(batch, rng)
        for b in range(len(records)):
            n = int(batch["input_mask"][b].sum())
            w = out["masked_lm_weights"][b] > 0
            positions = out["masked_lm_positions"][b][w]
            original = batch["input_ids"][b]
            assert list(positions) == sorted(positions) and len(set(positions)) == len(positions)
            assert len(positions) <= min(20, max(1, round(n * 0.15)))
            assert all(original[p] not in (CLS, SEP) and p < n for p in positions)
            assert list(out["masked_lm_ids"][b][w]) == list(original[positions])
            # whole words: a chosen continuation's word start is chosen too, and the word's other pieces
            cont = batch["word_continues"][b]
            chosen = set(positions.tolist())
            for p in chosen:
                if cont[p]:
                    assert p - 1 in chosen or original[p - 1] in (SEP, CLS)  # Google: a piece opening A is a word
                if p + 1 < n and cont[p + 1]:
                    assert p + 1 in chosen
            changed = out["input_ids"][b] != original
            assert not changed[~np.isin(np.arange(len(original)), positions)].any()  # only chosen ones change
            new = out["input_ids"][b][positions]
            kinds += [(new == MASK).sum(), (new == original[positions]).sum(),
                      ((new != MASK) & (new != original[positions])).sum()]
    share = kinds / kinds.sum()
    assert abs(share[0] - 0.8) < 0.02 and abs(share[1] - 0.1) < 0.02 and abs(share[2] - 0.1) < 0.02
    # the same draws, the same masks
    a = _masking().mask(batch, np.random.default_rng(5))
    b = _masking().mask(batch, np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_dynamic_masking_fills_the_count_without_whole_words():
    input_ids = np.array([[CLS, 2000, 2001, 2002, SEP, 2003, 2004, SEP, 0, 0]] * 50)
    batch = {"input_ids": input_ids, "input_mask": (input_ids != 0).astype(np.int64)}
    out = _masking(0.5, 3).mask(batch, np.random.default_rng(1))
    assert (out["masked_lm_weights"].sum(1) == 3).all()  # min(3, round(8 * 0.5))
    assert set(out["masked_lm_positions"][out["masked_lm_weights"] > 0].tolist()) == {1, 2, 3, 5, 6}


def _config(records, out, **kw):
    base = dict(input_files=[records], output_dir=str(out), vocab_file=VOCAB, batch_size=4, num_train_steps=8,
                num_warmup_steps=2, learning_rate=1e-3, save_every=4, log_every=1, progress=False, keep_last=2,
                model=BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64))
    base.update(kw)
    return PretrainConfig(**base)


def _losses(out):
    rows = [line.split(",") for line in (out / "scalars.csv").read_text().splitlines()[1:]]
    return {(int(s), n): float(v) for s, n, v in rows if n.endswith("loss")}


@pytest.mark.parametrize("workers", [0, 2])
def test_pretraining_on_dynamic_records_resumes_exactly(tmp_path, workers):
    path, _ = _records(tmp_path, "dyn", dynamic_masking=True, do_whole_word_mask=True, dupe_factor=2)
    pretrain(_config(path, tmp_path / "whole", num_workers=workers, eval_files=[path]))
    pretrain(_config(path, tmp_path / "split", num_workers=workers, stop_at_step=4, eval_files=[path]))
    pretrain(_config(path, tmp_path / "split", num_workers=workers, resume=True, eval_files=[path]))
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "split")
    a = json.loads((tmp_path / "whole" / "eval_metrics.json").read_text())
    b = json.loads((tmp_path / "split" / "eval_metrics.json").read_text())
    assert a == b and "next_sentence_accuracy" in a


def test_masked_lm_alone_on_records_without_the_next_sentence_task(tmp_path):
    path, _ = _records(tmp_path, "no-nsp", next_sentence=False, dynamic_masking=True, dupe_factor=2)
    out = tmp_path / "run"
    pretrain(_config(path, out, eval_files=[path]))
    names = {n for _, n in _losses(out)}
    assert names == {"loss", "masked_lm_loss"}
    losses = _losses(out)
    assert all(losses[(s, "loss")] == losses[(s, "masked_lm_loss")] for s in range(1, 9))
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert "next_sentence_accuracy" not in metrics and metrics["masked_lm_accuracy"] >= 0


def test_dynamic_records_need_a_vocabulary_and_all_masked_features(tmp_path):
    path, _ = _records(tmp_path, "dyn", dynamic_masking=True, dupe_factor=1)
    with pytest.raises(BertDetrError, match="unmasked .*--dynamic-masking.*give --vocab-file"):
        pretrain(_config(path, tmp_path / "run", vocab_file=None))
    with pytest.raises(BertDetrError, match="need the trainer's masking"):
        decode_batch(list(read_records(path))[:2], inspect_records([path]), [path])
    from bertdetr.bert.data.records import frame_record, serialize_example

    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(frame_record(serialize_example({"input_ids": [1, 2], "input_mask": [1, 1], "segment_ids": [0, 0],
                                                    "masked_lm_positions": [1]})))
    with pytest.raises(BertDetrError, match="lack the pretraining feature.*masked_lm_ids, masked_lm_weights"):
        inspect_records([str(bad)])


def test_chinese_dynamic_records_mark_the_segmenters_words(tmp_path):
    corpus = os.path.join(DATA, "zh", "corpus_zh.txt")
    vocab = os.path.join(DATA, "zh", "vocab_zh.txt")
    out = tmp_path / "zh.tfrecord"
    make_pretraining_data([corpus], str(out), vocab, PretrainingDataConfig(
        max_seq_length=64, dynamic_masking=True, do_whole_word_mask=True, word_segmenter="jieba", dupe_factor=1))
    records = list(iter_examples(out))
    inv = {i: t for t, i in load_vocab(vocab).items()}
    continued = sum(int(x) for r in records for x in r["word_continues"])
    assert continued > 200  # Chinese characters that continue a word: none would be "##" pieces
    assert max(int(x) for r in records for x in r["input_ids"]) < len(inv)  # plain ids, no marks


def test_a_batch_without_padding_goes_without_a_mask():
    """Issue 18: no mask at all for a batch none of whose sequences is padded (decided on the host),
    the same numbers as with an all-ones mask; a padded batch keeps its mask."""
    from bertdetr.bert.model import build_bert_for_pretraining
    from bertdetr.bert.pretraining.dataset import without_full_mask

    full = {"input_ids": torch.randint(1000, 2000, (2, 8)), "input_mask": torch.ones(2, 8, dtype=torch.long)}
    padded = {"input_ids": full["input_ids"], "input_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3])}
    assert "input_mask" not in without_full_mask(full) and "input_mask" in without_full_mask(padded)
    torch.manual_seed(0)
    model = build_bert_for_pretraining(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                  num_attention_heads=2, intermediate_size=64)).eval()
    with torch.no_grad():
        a = model(**without_full_mask(full))["masked_lm_logits"]
        b = model(**full)["masked_lm_logits"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

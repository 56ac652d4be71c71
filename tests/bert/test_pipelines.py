"""``bertdetr.bert.pipeline`` against transformers' own pipelines on the same folders: tiny random
models saved by transformers 5 (``tokenizer.json``, no ``vocab.txt``) and by us (``vocab.txt``)."""

import os

import pytest
import torch
import transformers

from bertdetr.bert import pipeline
from bertdetr.bert.inference import load_tokenizer
from bertdetr.errors import BertDetrError

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "bert")
VOCAB = os.path.join(DATA, "vocab-uncased.txt")
TEXTS = ["Paris is the [MASK] of France.", "John Smith's unaffable cat, don't worry!", "a [MASK] b [MASK] c"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipelines")
    torch.manual_seed(0)
    cfg = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=128)
    tokenizer = transformers.BertTokenizer(VOCAB)
    made = {}
    for name, cls, extra in (
            ("fill-mask", transformers.BertForMaskedLM, {}),
            ("text-classification", transformers.BertForSequenceClassification,
             {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}),
            ("token-classification", transformers.BertForTokenClassification,
             {"id2label": {0: "O", 1: "B-PER", 2: "I-PER"}, "label2id": {"O": 0, "B-PER": 1, "I-PER": 2}}),
            ("question-answering", transformers.BertForQuestionAnswering, {})):
        model = cls(transformers.BertConfig(**cfg, **extra)).eval()
        if name == "token-classification":  # a head that tags: not all O
            with torch.no_grad():
                model.classifier.bias.copy_(torch.tensor([0.0, 0.05, 0.05]))
        model.save_pretrained(tmp / name)
        tokenizer.save_pretrained(tmp / name)
        made[name] = str(tmp / name)
    made["feature-extraction"] = made["fill-mask"]
    return made


def _theirs(task, folder):
    return transformers.pipeline(task, model=folder, device="cpu")


def _close(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(float(b), rel=1e-4, abs=1e-6)
    else:
        assert a == b


def test_a_transformers_5_folder_has_no_vocab_txt_and_loads(folders):
    folder = folders["fill-mask"]
    assert not os.path.exists(os.path.join(folder, "vocab.txt"))
    ours = load_tokenizer(folder)
    assert len(ours.vocab) == 30522 and ours.do_lower_case
    assert ours.tokenize("Unaffable Johanson") == transformers.BertTokenizer(VOCAB).tokenize("Unaffable Johanson")


def test_fill_mask(folders):
    ours, theirs = pipeline("fill-mask", folders["fill-mask"], device="cpu"), _theirs("fill-mask", folders["fill-mask"])
    for text in (TEXTS[0], TEXTS[2], "[MASK] don't, it's fine . yes?"):
        _close(ours(text), theirs(text))
    _close(ours([TEXTS[0]]), theirs([TEXTS[0]]))


def test_feature_extraction(folders):
    ours = pipeline("feature-extraction", folders["feature-extraction"], device="cpu")
    theirs = _theirs("feature-extraction", folders["feature-extraction"])
    a, b = torch.tensor(ours(TEXTS[1])), torch.tensor(theirs(TEXTS[1]))
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_text_classification(folders):
    folder = folders["text-classification"]
    ours, theirs = pipeline("text-classification", folder, device="cpu"), _theirs("text-classification", folder)
    _close(ours(TEXTS[1]), theirs(TEXTS[1]))
    _close(ours(TEXTS[:2]), theirs(TEXTS[:2]))


def test_token_classification(folders):
    folder = folders["token-classification"]
    ours, theirs = pipeline("token-classification", folder, device="cpu"), _theirs("token-classification", folder)
    for text in ("John Smith's unaffable cat lives in Paris, don't worry!", "北京大学 and Tokyo"):
        got = ours(text)
        assert got, "the test head should tag something"
        _close(got, theirs(text))


def test_question_answering(folders):
    """transformers 5 has no question-answering pipeline: transformers' model and fast tokenizer on
    the same folder, and every span searched by brute force, as transformers 4's pipeline scored them."""
    import numpy as np

    folder = folders["question-answering"]
    ours = pipeline("question-answering", folder, device="cpu")
    model = transformers.BertForQuestionAnswering.from_pretrained(folder).eval()
    fast = transformers.BertTokenizerFast.from_pretrained(folder)
    for question, context in (("Where does John live?", "John Smith lives in Paris, near the river."),
                              ("Who wrote it?", "The unaffable book was written by Mary Shelley in 1818."),
                              ("哪里?", "他住在北京大学附近。")):
        enc = fast(question, context, return_offsets_mapping=True, return_tensors="pt")
        with torch.no_grad():
            out = model(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
        seq = enc.sequence_ids(0)
        allowed = [i == 0 or s == 1 for i, s in enumerate(seq)]

        def probs(logits):
            x = np.where(allowed, logits[0].numpy().astype(np.float64), -10000.0)
            e = np.exp(x - x.max())
            p = e / e.sum()
            p[0] = 0.0
            return p

        ps, pe = probs(out.start_logits), probs(out.end_logits)
        best = max(((ps[i] * pe[j], i, j) for i in range(len(seq)) for j in range(i, min(i + 15, len(seq)))
                    if seq[i] == 1 and seq[j] == 1), key=lambda t: t[0])
        offsets = enc["offset_mapping"][0].tolist()
        start, end = offsets[best[1]][0], offsets[best[2]][1]
        got = ours(question=question, context=context)
        assert got["answer"] == context[start:end] and (got["start"], got["end"]) == (start, end)
        assert got["score"] == pytest.approx(best[0], rel=1e-4)


def test_unknown_task_and_wrong_model(folders):
    with pytest.raises(BertDetrError, match="unknown task 'summarization'"):
        pipeline("summarization", folders["fill-mask"])
    with pytest.raises(BertDetrError, match="not a BertForTokenClassification"):
        pipeline("token-classification", folders["text-classification"], device="cpu")


def test_a_transformers_5_folder_everywhere_a_folder_is_taken(folders, tmp_path, capsys):
    from bertdetr.cli import main

    folder = folders["fill-mask"]
    assert main(["bert", "fill-mask", "--model", folder, "Paris is the [MASK] of France."]) == 0
    assert "paris is the" in capsys.readouterr().out.lower()
    lines = tmp_path / "lines.txt"
    lines.write_text("hello world\nunaffable cats\n")
    assert main(["bert", "embed", "--model", folder, "--input-file", str(lines), "--output", str(tmp_path / "v.npy")]) == 0
    # fine-tuning from it: its vocabulary read from tokenizer.json, exported as vocab.txt
    ner = os.path.join(DATA, "zh", "ner")
    out = tmp_path / "ner"
    assert main(["bert", "ner", "--data-dir", ner, "--init-checkpoint", folder, "--output-dir", str(out),
                 "--do-train", "--max-seq-length", "32", "--num-train-epochs", "0.1", "--no-progress"]) == 0
    exported = (out / "model" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(exported) == 30522 and exported[:2] == ["[PAD]", "[unused0]"]
    assert pipeline("token-classification", out / "model", device="cpu")("北京") is not None

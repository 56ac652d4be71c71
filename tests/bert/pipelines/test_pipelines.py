"""``bertdetr.bert.pipeline`` against transformers' own pipelines on the same folders: tiny random
models saved by transformers 5 (``tokenizer.json``, no ``vocab.txt``) and by us (``vocab.txt``)."""

import os

import pytest
import torch
import transformers

from bertdetr.bert import pipeline
from bertdetr.bert.inference import load_tokenizer
from bertdetr.errors import BertDetrError
from tests.bert.pipelines.conftest import DATA, VOCAB, close, hf_pipeline

TEXTS = ["Paris is the [MASK] of France.", "John Smith's unaffable cat, don't worry!", "a [MASK] b [MASK] c"]


def test_a_transformers_5_folder_has_no_vocab_txt_and_loads(folders):
    folder = folders["fill-mask"]
    assert not os.path.exists(os.path.join(folder, "vocab.txt"))
    ours = load_tokenizer(folder)
    assert len(ours.vocab) == 30522 and ours.do_lower_case
    assert ours.tokenize("Unaffable Johanson") == transformers.BertTokenizer(VOCAB).tokenize("Unaffable Johanson")


def test_fill_mask(folders):
    ours, hf = pipeline("fill-mask", folders["fill-mask"], device="cpu"), hf_pipeline("fill-mask", folders["fill-mask"])
    for text in (TEXTS[0], TEXTS[2], "[MASK] don't, it's fine . yes?", "北京是中国的[MASK]都。"):
        close(ours(text), hf(text))
    close(ours([TEXTS[0]]), hf([TEXTS[0]]))
    close(ours(TEXTS[::2], top_k=2), hf(TEXTS[::2], top_k=2))


def test_fill_mask_targets(folders):
    """Targets as transformers scores them: the whole vocabulary's softmax at the targets; a word
    outside the vocabulary by its first piece, with a warning; duplicates once; top_k capped."""
    ours, hf = pipeline("fill-mask", folders["fill-mask"], device="cpu"), hf_pipeline("fill-mask", folders["fill-mask"])
    for targets, top_k in ((["paris", "lyon", "paris"], 5), ("the", 3), (["北", "京", "capital"], 2)):
        close(ours(TEXTS[0], targets=targets, top_k=top_k), hf(TEXTS[0], targets=targets, top_k=top_k))
    with pytest.warns(UserWarning, match="'Lyon' is not in the vocabulary: its first piece 'lyon'"):
        got = ours(TEXTS[2], targets=["Lyon", "zzzqx"])
    close(got, hf(TEXTS[2], targets=["Lyon", "zzzqx"]))
    assert len(got) == 2 and all(len(rows) == 2 for rows in got)
    fixed = pipeline("fill-mask", folders["fill-mask"], device="cpu", targets=["paris", "lyon"])
    assert {row["token_str"] for row in fixed(TEXTS[0])} == {"paris", "lyon"}
    with pytest.raises(BertDetrError, match="none of the targets"), pytest.warns(UserWarning, match="makes no token"):
        ours(TEXTS[0], targets=["  "])


def test_fill_mask_bad_input(folders):
    ours = pipeline("fill-mask", folders["fill-mask"], device="cpu")
    with pytest.raises(BertDetrError, match="no \\[MASK\\] to fill"):
        ours("no mask here")
    # the only [MASK] beyond the model's 128 positions: said, not a tensor error from the model
    with pytest.raises(BertDetrError, match="every \\[MASK\\] was cut off: .* 128 positions"):
        ours("word " * 200 + "[MASK]")
    for top_k in (0, 2.5, True):
        with pytest.raises(BertDetrError, match="top_k must be an integer >= 1"):
            ours(TEXTS[0], top_k=top_k)
    with pytest.raises(BertDetrError, match="top_k must be an integer >= 1, got True"):
        pipeline("fill-mask", folders["fill-mask"], device="cpu", top_k=True)
    for targets in (5, [], ["a", 3], {"a"}):
        with pytest.raises(BertDetrError, match="targets must be a word or a non-empty list of words"):
            ours(TEXTS[0], targets=targets)


def test_fill_mask_top_k_beyond_the_vocabulary_gives_all_of_it(folders):
    # transformers caps top_k at its candidates (the targets; here the whole vocabulary, as the CLI)
    ours = pipeline("fill-mask", folders["fill-mask"], device="cpu")
    everything = ours("a [MASK] b", top_k=40000)
    assert len(everything) == 30522 and len({row["token"] for row in everything}) == 30522
    close(everything[:5], ours("a [MASK] b"))
    assert len(ours("a [MASK] b", targets=["paris", "lyon"], top_k=40000)) == 2


def test_feature_extraction(folders):
    ours = pipeline("feature-extraction", folders["feature-extraction"], device="cpu")
    hf = hf_pipeline("feature-extraction", folders["feature-extraction"])
    for text in (TEXTS[1], TEXTS[2], "北京大学"):  # a literal [MASK] is the mask token on both sides
        a, b = torch.tensor(ours(text)), torch.tensor(hf(text))
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    tensor = ours(TEXTS[2], return_tensors=True)
    assert isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu"
    torch.testing.assert_close(tensor, hf(TEXTS[2], return_tensors=True), atol=1e-5, rtol=1e-4)


def test_text_classification(folders):
    """Every option and return shape of transformers' pipeline, its quirks included (a lone text
    without top_k in the call comes back in a list, a pair does not)."""
    folder = folders["text-classification"]
    ours, hf = pipeline("text-classification", folder, device="cpu"), hf_pipeline("text-classification", folder)
    pair = {"text": TEXTS[1], "text_pair": "北京大学"}
    for inputs in (TEXTS[1], TEXTS[:2], pair, [pair]):
        for kwargs in ({}, {"top_k": None}, {"top_k": 1}, {"top_k": 2}, {"function_to_apply": "none"},
                       {"function_to_apply": "sigmoid", "top_k": None}):
            close(ours(inputs, **kwargs), hf(inputs, **kwargs))
    all_labels = pipeline("text-classification", folder, device="cpu", top_k=None)
    close(all_labels(TEXTS[1]), transformers.pipeline("text-classification", model=folder, device="cpu",
                                                       top_k=None)(TEXTS[1]))
    with pytest.raises(BertDetrError, match="function_to_apply must be softmax, sigmoid or none"):
        ours(TEXTS[1], function_to_apply="tanh")
    with pytest.raises(BertDetrError, match="top_k must be an integer or None"):
        ours(TEXTS[1], top_k="all")
    with pytest.raises(BertDetrError, match="takes top_k, function_to_apply, truncation and batch_size, not padding"):
        ours(TEXTS[1], padding=True)


def test_unknown_task_option_and_wrong_model(folders):
    with pytest.raises(BertDetrError, match="unknown task 'summarization'"):
        pipeline("summarization", folders["fill-mask"])
    with pytest.raises(BertDetrError, match="fill-mask takes top_k, targets, batch_size, dtype, not tokp"):
        pipeline("fill-mask", folders["fill-mask"], device="cpu", tokp=3)
    with pytest.raises(BertDetrError, match="feature-extraction takes return_tensors, truncation, batch_size, dtype, not top_k"):
        pipeline("feature-extraction", folders["fill-mask"], device="cpu", top_k=3)
    with pytest.raises(BertDetrError, match="not a BertForTokenClassification"):
        pipeline("token-classification", folders["text-classification"], device="cpu")


def test_a_detr_folder_is_said(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"num_queries": 100, "bbox_head": {"num_classes": 80}}))
    with pytest.raises(BertDetrError, match="holds a DETR checkpoint, not a BERT model"):
        pipeline("fill-mask", tmp_path, device="cpu")
    from bertdetr.bert.heads import BertForSequenceClassification
    from bertdetr.bert.model import BertModel

    for cls in (BertModel, BertForSequenceClassification):  # (not "config has no vocab_size")
        with pytest.raises(BertDetrError, match="holds a DETR checkpoint, not a BERT model"):
            cls.from_pretrained(tmp_path)


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


def test_dtype_as_transformers(folders):
    """``dtype`` (or transformers' older ``torch_dtype``): the weights in bf16, scores still floats
    near float32's; a name or a torch dtype; a bad one said."""
    folder = folders["text-classification"]
    full = pipeline("text-classification", folder, device="cpu")(TEXTS[1], top_k=None)
    for dtype in (torch.bfloat16, "bfloat16", "torch.bfloat16"):
        for key in ("dtype", "torch_dtype"):
            half = pipeline("text-classification", folder, device="cpu", **{key: dtype})
            assert next(half.model.parameters()).dtype == torch.bfloat16
            got = half(TEXTS[1], top_k=None)
            assert {r["label"] for r in got} == {r["label"] for r in full}
            for a in got:
                assert isinstance(a["score"], float)
                assert a["score"] == pytest.approx(next(r["score"] for r in full if r["label"] == a["label"]), abs=2e-2)
    assert next(pipeline("fill-mask", folders["fill-mask"], device="cpu", dtype="auto").model.parameters()).dtype \
        == torch.float32
    both = pipeline("fill-mask", folders["fill-mask"], device="cpu", dtype="bf16", torch_dtype="float32")
    assert next(both.model.parameters()).dtype == torch.bfloat16  # dtype wins, as in transformers
    with pytest.raises(BertDetrError, match="dtype must be torch.bfloat16, torch.float16, torch.float32 .* got 'int8'"):
        pipeline("fill-mask", folders["fill-mask"], device="cpu", dtype="int8")


def test_inputs_that_are_not_texts_are_said(folders):
    cases = (("text-classification", [None, 3, {"text": None}, {"txt": "a"}, ["a", None]]),
             ("feature-extraction", [None, ["a", 5]]), ("token-classification", [None, ["a", 3]]),
             ("fill-mask", [None, ["a [MASK]", None]]))
    for task, inputs in cases:
        p = pipeline(task, folders[task], device="cpu")
        for x in inputs:
            with pytest.raises(BertDetrError, match=f"{task}|\\[MASK\\] to fill"):
                p(x)
    qa = pipeline("question-answering", folders["question-answering"], device="cpu")
    for x in (None, 3):
        with pytest.raises(BertDetrError, match="needs question= and context="):
            qa(x)


@pytest.mark.parametrize("problem_type, labels", [("multi_label_classification", 3), ("regression", 1)])
def test_text_classification_reads_the_problem_type(tmp_path, problem_type, labels):
    """A transformers folder's ``problem_type``: multi-label scores by sigmoid (each label on its
    own), regression as the raw output, as transformers' pipeline does."""
    torch.manual_seed(0)
    names = {i: f"L{i}" for i in range(labels)}
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=128, problem_type=problem_type,
                                     id2label=names, label2id={v: k for k, v in names.items()})
    transformers.BertForSequenceClassification(config).eval().save_pretrained(tmp_path)
    transformers.BertTokenizer(VOCAB).save_pretrained(tmp_path)
    ours, hf = pipeline("text-classification", tmp_path, device="cpu"), hf_pipeline("text-classification", str(tmp_path))
    for kwargs in ({}, {"top_k": None}):
        got = ours(TEXTS[1], **kwargs)
        close(got, hf(TEXTS[1], **kwargs))
    if problem_type == "regression":  # the output itself
        model = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
        with torch.no_grad():
            logit = model(**transformers.BertTokenizer(VOCAB)(TEXTS[1], return_tensors="pt")).logits.item()
        assert got[0]["score"] == pytest.approx(logit, rel=1e-4, abs=1e-6)
    else:
        assert sum(row["score"] for row in got) != pytest.approx(1.0, abs=1e-3)  # not a softmax


@pytest.mark.parametrize("task", ["feature-extraction", "text-classification"])
def test_truncation_as_transformers_takes_it(folders, task):
    """transformers' text-classification and feature-extraction take the tokenizer's truncation=;
    ours always cut to the model's length: True is that, a no-op; False would be ignored, so refused."""
    ours = pipeline(task, folders[task], device="cpu", truncation=True)
    close(ours(TEXTS[1], truncation=True), hf_pipeline(task, folders[task])(TEXTS[1], truncation=True))
    long_text = "a long text " * 100   # longer than the model's 128 positions: cut either way
    assert ours(long_text, truncation=True) == ours(long_text)
    assert ours(TEXTS[1], truncation="longest_first") == ours(TEXTS[1])
    with pytest.raises(BertDetrError, match=rf"{task}: truncation=False is not taken: a text is always cut"):
        ours(TEXTS[1], truncation=False)
    with pytest.raises(BertDetrError, match="truncation='only_second' is not taken"):
        pipeline(task, folders[task], device="cpu", truncation="only_second")


def test_an_unknown_call_option_is_a_bertdetr_error_in_every_pipeline(folders):
    with pytest.raises(BertDetrError, match="feature-extraction takes return_tensors, truncation and batch_size, "
                                            "not top_k"):
        pipeline("feature-extraction", folders["feature-extraction"], device="cpu")(TEXTS[1], top_k=3)
    with pytest.raises(BertDetrError, match="fill-mask takes top_k, targets and batch_size, not truncation"):
        pipeline("fill-mask", folders["fill-mask"], device="cpu")("a [MASK] film", truncation=True)


def test_devices_as_transformers(folders, monkeypatch):
    """The device as transformers' pipeline reads it (bertdetr.devices, DETR's API too): -1 the CPU;
    a GPU that is not there, a name torch does not know, a bool: clear errors before loading."""
    ours = pipeline("feature-extraction", folders["feature-extraction"], device=-1)
    assert next(ours.model.parameters()).device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, error, match in ((0, BertDetrError, "device 0 is a GPU, and torch sees none"),
                                 ("cuda", BertDetrError, "device 'cuda' is a GPU, and torch sees none"),
                                 ("gpu", BertDetrError, "device 'gpu' is not a device torch knows"),
                                 (True, TypeError, "device must be None, an int .* got bool")):
        with pytest.raises(error, match=match):
            pipeline("feature-extraction", folders["feature-extraction"], device=device)

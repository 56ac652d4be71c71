"""``bert ner --crf`` (CLUENER2020's BERT+CRF): its chain's features against goldens of CLUENER's
own feature code, its loss as CLUENER's model computes it (with the CRF checked against its
references in ``tests/nn/test_crf.py``), a checkpoint saved by CLUENER's own model read with equal
loss, paths and dev metrics, decoding by the CRF in ``bert ner`` and in the pipeline, the saved
directory both ways, the CRF's own learning rate, and the command end to end."""

import json
import os
import shutil

import pytest
import torch
import transformers

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning.ner import NerConfig, run_ner
from bertdetr.bert.finetuning.ner_data import read_cluener, read_conll, sentence_windows, windows_to_tensors
from bertdetr.bert.heads import BertCrfForNer, BertForTokenClassification, BertSpanForNer, crf_sequences
from bertdetr.bert.model import BertConfig, build_bert_model
from bertdetr.bert.optimization import create_optimizer, weight_decay_groups
from bertdetr.bert.pipelines import pipeline
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from tests.bert.finetuning.conftest import CLUENER, TINY_ZH, VOCAB_ZH
from tests.bert.finetuning.conftest import cluener_ner_args as _args



CLUENERS_MODEL = os.path.join(CLUENER, "clueners_crf_model")


def _golden():
    with open(os.path.join(CLUENER, "crf_features_golden.json"), encoding="utf-8") as f:
        return json.load(f)


def _tiny(labels, seed=0):
    torch.manual_seed(seed)
    with open(VOCAB_ZH, encoding="utf-8") as f:
        config = BertConfig(vocab_size=sum(1 for _ in f), **TINY_ZH)
    return BertCrfForNer(build_bert_model(config), labels).eval()


def _clueners_batch():
    """dev.json as our windows (with CLUENER's label list), next to CLUENER's features of it."""
    golden = _golden()
    labels = golden["labels"]
    windows = sentence_windows(read_cluener(os.path.join(CLUENER, "dev.json")), FullTokenizer(VOCAB_ZH, True),
                               {label: i for i, label in enumerate(labels)}, golden["max_seq_length"])
    ours = windows_to_tensors(windows, golden["max_seq_length"], tag_mask=True)
    theirs = {k: torch.tensor([f[k] for f in golden["features"]]) for k in ("input_ids", "input_mask", "label_ids")}
    return labels, ours, theirs


def test_chain_is_clueners_features():
    """CLUENER's features tag [CLS] and [SEP] O and every character between: our chain is that."""
    labels, ours, theirs = _clueners_batch()
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["input_mask"], theirs["input_mask"])
    _, mask, tags = crf_sequences(torch.zeros(*ours["input_ids"].shape, len(labels)), ours["tag_mask"],
                                  ours["label_ids"], labels.index("O"))
    assert torch.equal(mask.long(), theirs["input_mask"])
    assert torch.equal(tags, theirs["label_ids"] * theirs["input_mask"])


def test_loss_is_clueners_and_logits_are_transformers(tmp_path):
    """CLUENER's BertCrfForNer: ``-crf(emissions=logits, tags=label_ids, mask=attention_mask)``
    with its "mean"; the emissions are transformers' token classifier's on the saved directory."""
    labels, ours, theirs = _clueners_batch()
    model = _tiny(labels)
    out = model(input_ids=ours["input_ids"], input_mask=ours["input_mask"], tag_mask=ours["tag_mask"],
                label_ids=ours["label_ids"])
    clueners = -model.crf(out["logits"], theirs["label_ids"], theirs["input_mask"], reduction="mean")
    torch.testing.assert_close(out["loss"], clueners, rtol=1e-6, atol=1e-5)
    # without tag_mask every token of input_mask is in the chain: the same for characters
    plain = model(input_ids=ours["input_ids"], input_mask=ours["input_mask"], label_ids=ours["label_ids"])
    torch.testing.assert_close(plain["loss"], out["loss"], rtol=0, atol=0)

    model.save_pretrained(tmp_path / "crf")
    hf = transformers.BertForTokenClassification.from_pretrained(tmp_path / "crf").eval()
    with torch.no_grad():
        hf_logits = hf(input_ids=ours["input_ids"], attention_mask=ours["input_mask"]).logits
    torch.testing.assert_close(out["logits"], hf_logits, rtol=1e-5, atol=1e-5)


def test_word_pieces_are_left_out_of_the_chain():
    """A word's later pieces are no steps: the tagged positions move to the front in order, their
    -100 labels ([CLS], [SEP]) become O."""
    logits = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    tag_mask = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    labels = torch.tensor([[-100, 0, -100, 1, -100, -100], [-100, 2, -100, -100, -100, -100]])
    emissions, mask, tags = crf_sequences(logits, tag_mask, labels, outside_id=2)
    assert mask.tolist() == [[True] * 4 + [False] * 2, [True] * 3 + [False] * 3]
    assert torch.equal(emissions[0, :4], logits[0, [0, 1, 3, 4]])
    assert torch.equal(emissions[1, :3], logits[1, :3])
    assert tags.tolist() == [[2, 0, 1, 2, 0, 0], [2, 2, 2, 0, 0, 0]]


def _forbid(model, label):
    """A CRF that never gives ``label``, and emissions that always prefer it."""
    k = model.labels.index(label)
    with torch.no_grad():
        model.output_bias[k] = 50.0
        model.crf.transitions[:, k] = -1e4
        model.crf.start_transitions[k] = -1e4


def test_decoding_follows_the_crf_not_the_best_scores(tmp_path):
    model = _tiny(["B-LOC", "I-LOC", "O"])
    _forbid(model, "I-LOC")
    ids = torch.randint(5, 100, (2, 9))
    logits = model(input_ids=ids)["logits"]
    assert (logits.argmax(-1) == 1).all()
    assert not (model.decode(logits, torch.ones_like(ids)) == 1).any()
    # the pipeline (and bert tag) decode a saved CRF model by its CRF
    model.save_pretrained(tmp_path / "crf")
    shutil.copy(VOCAB_ZH, tmp_path / "crf" / "vocab.txt")
    tagger = pipeline("ner", str(tmp_path / "crf"))
    assert isinstance(tagger.model, BertCrfForNer)
    for aggregation in ("none", "simple", "first", "average", "max"):
        found = tagger("北京和上海的天气", aggregation_strategy=aggregation, ignore_labels=[])
        assert found and all(e.get("entity", e.get("entity_group")) not in ("I-LOC",) for e in found)
    assert {e["entity"] for e in tagger("北京和上海的天气", ignore_labels=[])} <= {"B-LOC", "O"}
    # without the CRF the same weights give I-LOC everywhere (transformers' reading of the directory)
    plain = BertForTokenClassification(model.bert, model.labels)
    plain.output_weights, plain.output_bias = model.output_weights, model.output_bias
    assert (plain(input_ids=ids)["logits"].argmax(-1) == 1).all()


def test_saved_directory_loads_back_with_its_crf(tmp_path):
    model = _tiny(["B-PER", "I-PER", "O", "S-PER"])
    model.save_pretrained(tmp_path / "crf")
    back = BertForTokenClassification.from_pretrained(tmp_path / "crf")
    assert isinstance(back, BertCrfForNer) and back.labels == model.labels
    for name in ("start_transitions", "end_transitions", "transitions"):
        assert torch.equal(getattr(back.crf, name), getattr(model.crf, name))
    # a plain token classifier's directory is no CRF
    BertForTokenClassification(model.bert, model.labels).save_pretrained(tmp_path / "plain")
    assert type(BertForTokenClassification.from_pretrained(tmp_path / "plain")) is BertForTokenClassification


def test_crf_and_classifier_get_their_own_learning_rate():
    model = _tiny(["B-PER", "I-PER", "O"])
    optimizer, scheduler = create_optimizer(model, 3e-5, 10, 0, head_lrs={"crf.": 1e-3, "output_": 1e-3})
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [(g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"])) for g in optimizer.param_groups]
    head = [g for g in groups if g[0] == 1e-3]
    assert sorted(n for g in head for n in g[2]) == ["crf.end_transitions", "crf.start_transitions",
                                                      "crf.transitions", "output_bias", "output_weights"]
    assert all(lr == 3e-5 for lr, _, params in groups if lr != 1e-3)
    assert sum(len(g[2]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    with pytest.raises(BertDetrError, match="no parameter of the model is named nothing"):
        weight_decay_groups(model, 0.01, {"nothing.": 1e-3})
    with pytest.raises(BertDetrError, match="have no O"):
        _tiny(["B-PER", "I-PER"])


def test_ner_crf_trains_evaluates_predicts_and_evaluates_again_with_its_crf(zh_bert_config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(out, zh_bert_config, "--do-train", "--do-eval", "--do-predict", "--crf", "--train-batch-size",
                      "16", "--num-train-epochs", "4", "--learning-rate", "1e-3")) == 0
    first = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    assert 0 < first["eval_f1"] <= 1 and first["eval_loss"] > 0
    assert isinstance(BertForTokenClassification.from_pretrained(out / "model"), BertCrfForNer)
    predicted = (out / "cluener_predict.json").read_text(encoding="utf-8")
    # evaluated again without --crf: the checkpoint's head decides (its CRF), the same figures
    assert main(_args(out, zh_bert_config, "--do-eval", "--do-predict")) == 0
    again = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    assert again["eval_f1"] == first["eval_f1"] and again["eval_loss"] == pytest.approx(first["eval_loss"])
    assert (out / "cluener_predict.json").read_text(encoding="utf-8") == predicted
    # and from the exported model in another folder
    other = tmp_path / "other"
    assert main(_args(other, zh_bert_config, "--do-eval", "--init-checkpoint", str(out / "model"))) == 0
    assert json.loads((other / "eval_metrics.json").read_text(encoding="utf-8"))["eval_f1"] == first["eval_f1"]


def test_resuming_with_another_head_says_so(zh_bert_config, tmp_path):
    def config(**kw):
        return NerConfig(data_dir=CLUENER, output_dir=str(tmp_path / "out"), vocab_file=VOCAB_ZH,
                         bert_config_file=zh_bert_config, max_seq_length=32, do_train=True, train_batch_size=32,
                         num_train_epochs=1, progress=False, save_checkpoints_steps=2, **kw)

    run_ner(config(stop_at_step=2))
    with pytest.raises(BertDetrError, match="BertCrfForNer"):
        run_ner(config(resume=True, crf=True))


@pytest.mark.parametrize("head", ["crf", "span"])
def test_stop_and_resume_equals_an_uninterrupted_run(zh_bert_config, tmp_path, head):
    """(the CRF's and the span head's, CLUENER's other two baselines)"""
    def config(out, **kw):
        return NerConfig(data_dir=CLUENER, output_dir=str(out), vocab_file=VOCAB_ZH, bert_config_file=zh_bert_config,
                         max_seq_length=32, do_train=True, train_batch_size=32, num_train_epochs=1, **{head: True},
                         learning_rate=1e-3, save_checkpoints_steps=4, progress=False, **kw)

    run_ner(config(tmp_path / "whole"))
    run_ner(config(tmp_path / "parts", stop_at_step=5))
    run_ner(config(tmp_path / "parts", resume=True))
    load = (BertSpanForNer if head == "span" else BertForTokenClassification).from_pretrained
    a = load(tmp_path / "whole" / "model").state_dict()
    b = load(tmp_path / "parts" / "model").state_dict()
    for k in a:
        if "pooler" not in k:
            torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


def test_bad_crf_learning_rate_exits_2(zh_bert_config, tmp_path, capsys):
    assert main(_args(tmp_path / "out", zh_bert_config, "--do-train", "--crf", "--crf-learning-rate", "0")) == 2
    assert "--crf-learning-rate must be positive" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_compiled_the_crf_breaks_the_graph_at_its_recursion_only():
    """The forward algorithm is a loop over the chain's dynamic length: it runs eager
    (``torch.compiler.disable``) rather than compile a graph per length; the rest compiles."""
    model = _tiny(["B-X", "I-X", "O"])
    g = torch.Generator().manual_seed(1)
    batch = dict(input_ids=torch.randint(5, 100, (2, 8), generator=g), input_mask=torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
                 label_ids=torch.randint(0, 3, (2, 8), generator=g))
    explained = torch._dynamo.explain(model)(**batch)
    assert explained.graph_break_count >= 1
    assert all("_compute_normalizer" in r.reason for r in explained.break_reasons), explained.break_reasons


def test_compiled_crf_training_equals_eager(zh_bert_config, tmp_path, monkeypatch):
    from tests.bert.pretraining.test_compile import _aot_eager

    args = ("--do-train", "--crf", "--train-batch-size", "64", "--num-train-epochs", "1", "--learning-rate", "1e-3",
            "--device", "cpu")
    assert main(_args(tmp_path / "eager", zh_bert_config, *args)) == 0
    calls = _aot_eager(monkeypatch)
    assert main(_args(tmp_path / "compiled", zh_bert_config, *args, "--compile")) == 0
    assert [name for name, _, _ in calls] == ["BertCrfForNer", "clip_and_update"]
    a = BertForTokenClassification.from_pretrained(tmp_path / "eager" / "model").state_dict()
    b = BertForTokenClassification.from_pretrained(tmp_path / "compiled" / "model").state_dict()
    for key in a:
        if "pooler" not in key:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def _clueners_outputs():
    with open(os.path.join(CLUENER, "clueners_crf_outputs.json"), encoding="utf-8") as f:
        return json.load(f)


def test_a_checkpoint_of_clueners_own_model_gives_its_loss_and_paths():
    """CLUENER's BertCrfForNer saved by its own code (no tag names, no architectures,
    pytorch_model.bin): read as a BertCrfForNer with CLUENER's tags, its loss, emissions and
    Viterbi paths on its own features of dev.json are those its model gave."""
    golden, outputs = _golden(), _clueners_outputs()
    with pytest.warns(UserWarning, match="CLUENER2020's BERT\\+CRF"):
        model = BertForTokenClassification.from_pretrained(CLUENERS_MODEL)
    assert isinstance(model, BertCrfForNer) and model.labels == golden["labels"]
    model.eval()
    batch = {k: torch.tensor([f[k] for f in golden["features"]]) for k in ("input_ids", "input_mask", "segment_ids",
                                                                           "label_ids")}
    with torch.no_grad():
        out = model(**batch)
    n = len(outputs["logits_row0"])
    torch.testing.assert_close(out["logits"][0, :n], torch.tensor(outputs["logits_row0"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["loss"], torch.tensor(outputs["loss"]), rtol=1e-5, atol=1e-4)
    paths = model.decode(out["logits"], batch["input_mask"])
    assert [row[:len(p)].tolist() for row, p in zip(paths, outputs["paths"])] == outputs["paths"]


def test_bert_ner_evaluates_a_clueners_checkpoint_as_its_paths_say(tmp_path):
    """``bert ner --do-eval --init-checkpoint`` on CLUENER's saved model: the dev metrics of the
    tags CLUENER's own model decoded (its paths less [CLS] and [SEP], as its run_ner_crf.py reads them)."""
    from bertdetr.bert.finetuning.ner_metrics import ner_metrics

    labels, outputs = _golden()["labels"], _clueners_outputs()
    sentences = read_cluener(os.path.join(CLUENER, "dev.json"))
    theirs = ner_metrics([s.tags for s in sentences], [[labels[k] for k in p[1:-1]] for p in outputs["paths"]])
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="CLUENER2020's BERT"):
        assert main(["bert", "ner", "--data-dir", CLUENER, "--output-dir", str(out), "--init-checkpoint", CLUENERS_MODEL,
                     "--do-eval", "--max-seq-length", "64", "--no-progress"]) == 0
    ours = json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))
    assert theirs["num_predicted"] > 0
    for key in ("precision", "recall", "f1"):
        assert ours[f"eval_{key}"] == pytest.approx(theirs[key], abs=1e-7)
    assert ours["num_predicted"] == theirs["num_predicted"]


def test_english_words_of_several_pieces_are_one_step_each(tmp_path):
    """CoNLL English with words WordPiece cuts into several pieces: the chain has a step per word
    (plus [CLS] and [SEP]), and every word of test.txt gets one predicted tag."""
    vocab_en = os.path.join(os.path.dirname(CLUENER), "..", "..", "bert", "vocab-uncased.txt")
    sentences = ["Peter B-PER\nBlackburn I-PER\nvisited O\nJohannesburg B-LOC\n",
                 "Angela B-PER\nMerkel I-PER\nspoke O\nin O\nStrasbourg B-LOC\n",
                 "the O\nweather O\nin O\nCopenhagen B-LOC\nwas O\nunremarkable O\n"]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.txt", "dev.txt", "test.txt"):
        (data / name).write_text("\n".join(sentences * (8 if name == "train.txt" else 1)))
    tokenizer = FullTokenizer(vocab_en, True)
    windows = sentence_windows(read_conll(data / "dev.txt"), tokenizer, {"B-LOC": 0, "B-PER": 1, "I-PER": 2, "O": 3}, 32)
    tensors = windows_to_tensors(windows, 32, tag_mask=True)
    assert (tensors["input_mask"].sum(1) > tensors["tag_mask"].sum(1))[1:].all()  # Merkel, unremarkable: pieces
    assert tensors["tag_mask"].sum(1).tolist() == [len(w.word_positions) + 2 for w in windows]
    with open(vocab_en, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(BertConfig(vocab_size=vocab_size, **TINY_ZH).to_google_dict()))
    out = tmp_path / "out"
    assert main(["bert", "ner", "--data-dir", str(data), "--output-dir", str(out), "--vocab-file", vocab_en,
                 "--bert-config-file", str(config), "--max-seq-length", "32", "--no-progress", "--crf", "--do-train",
                 "--do-eval", "--do-predict", "--train-batch-size", "8", "--num-train-epochs", "6",
                 "--learning-rate", "2e-3"]) == 0
    blocks = (out / "test_predictions.txt").read_text().strip().split("\n\n")
    rows = [line.split() for block in blocks for line in block.splitlines()]
    assert len(blocks) == 3 and len(rows) == 15 and all(len(r) == 3 for r in rows)
    assert {r[2] for r in rows} <= {"B-LOC", "B-PER", "I-PER", "O"}


def test_crf_asked_of_a_model_trained_without_one_warns(zh_bert_config, tmp_path):
    out = tmp_path / "out"
    assert main(_args(out, zh_bert_config, "--do-train", "--train-batch-size", "64", "--num-train-epochs", "1")) == 0
    with pytest.warns(UserWarning, match="--crf: the fine-tuned model's head is another"):
        assert main(_args(out, zh_bert_config, "--do-eval", "--crf")) == 0
    assert json.loads((out / "eval_metrics.json").read_text(encoding="utf-8"))["num_sentences"] > 0


def test_pipeline_reads_a_long_text_in_windows_with_the_crf(tmp_path):
    """A text longer than the model's 64 positions, read in overlapping windows (``stride``): each
    window decoded by the CRF, the entities' spans inside the text, none given twice."""
    model = _tiny(["B-LOC", "I-LOC", "O"], seed=3)
    with torch.no_grad():  # LOC where the emissions say, in B- I- order (the CRF forbids O -> I-LOC)
        model.crf.transitions[2, 1] = -1e4
        model.crf.start_transitions[1] = -1e4
    model.save_pretrained(tmp_path / "crf")
    shutil.copy(VOCAB_ZH, tmp_path / "crf" / "vocab.txt")
    tagger = pipeline("ner", str(tmp_path / "crf"))
    text = "听说周杰和许晴下个月要去厦门旅行。" * 8  # 136 characters
    found = tagger(text, aggregation_strategy="simple", stride=16)
    assert found, "a random model tags something"
    assert all(e["entity_group"] == "LOC" and 0 <= e["start"] < e["end"] <= len(text) for e in found)
    assert len({(e["start"], e["end"]) for e in found}) == len(found)
    starts = [e["start"] for e in found]
    assert starts == sorted(starts) and all(a["end"] <= b["start"] for a, b in zip(found, found[1:]))


def test_a_checkpoint_of_clueners_softmax_model_reads_as_a_token_classifier(tmp_path):
    """CLUENER's BertSoftmaxForNer saves the same folder less the CRF (its config as the CRF's,
    ``loss_type`` and no architectures): read as a plain token classifier with CLUENER's tags, its
    emissions those its model gave (the same weights before the CRF)."""
    folder = tmp_path / "softmax"
    shutil.copytree(CLUENERS_MODEL, folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("crf.")}, folder / "pytorch_model.bin")
    with pytest.warns(UserWarning, match="CLUENER2020's BERT\\+softmax checkpoint"):
        model = BertForTokenClassification.from_pretrained(folder)
    assert type(model) is BertForTokenClassification and model.labels == _golden()["labels"]
    golden, outputs = _golden(), _clueners_outputs()
    row = golden["features"][0]
    with torch.no_grad():
        logits = model.eval()(input_ids=torch.tensor([row["input_ids"]]), input_mask=torch.tensor([row["input_mask"]]),
                              segment_ids=torch.tensor([row["segment_ids"]]))["logits"]
    n = len(outputs["logits_row0"])
    torch.testing.assert_close(logits[0, :n], torch.tensor(outputs["logits_row0"]), rtol=1e-5, atol=1e-5)
    # a config without CLUENER's marks is no token classifier by its classifier alone (a sentence classifier's
    # classifier.* has the same names)
    config = json.loads((folder / "config.json").read_text())
    del config["loss_type"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="not a BertForTokenClassification"):
        BertForTokenClassification.from_pretrained(folder)


def test_a_pipeline_of_clueners_checkpoint_leaves_its_special_tags_out(tmp_path):
    """CLUENER's tag list holds X, [START] and [END], which tag no entity (its get_entity_bios reads
    B-, I- and S- only): by default the pipeline leaves them out as it does O; asked for, they come."""
    folder = tmp_path / "softmax"
    shutil.copytree(CLUENERS_MODEL, folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("crf.")}
    labels = _golden()["labels"]
    bias = torch.zeros_like(state["classifier.bias"])
    bias[[labels.index("X"), labels.index("[START]"), labels.index("[END]")]] = torch.tensor([60.0, 40.0, 50.0])
    state["classifier.bias"] = bias  # every token's best tag is X
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.warns(UserWarning, match="CLUENER2020's BERT\\+softmax checkpoint"):
        tagger = pipeline("ner", str(folder))
    text = "浙商银行企业信贷部叶老桂博士"
    assert tagger(text) == [] and tagger(text, aggregation_strategy="simple") == []
    assert tagger(text, ignore_labels=None) == []
    tokens = tagger(text, ignore_labels=["O"])
    assert len(tokens) == len(text) and {e["entity"] for e in tokens} == {"X"}
    assert [e["entity_group"] for e in tagger(text, aggregation_strategy="simple", ignore_labels=["O"])] == ["X"]

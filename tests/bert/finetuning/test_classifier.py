"""``bertdetr bert classify`` end to end on the hand-made GLUE files with a tiny random BERT: Google's
outputs and their layout, resuming, and bad input (exit 2, file and line named, nothing written)."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from bertdetr.bert.finetuning.classifier import (
    ClassifierConfig,
    f1_score,
    glue_metrics,
    matthews_corrcoef,
    run_classifier,
)
from bertdetr.bert.finetuning.finetune import train_batch_indices
from bertdetr.bert.model import BertConfig
from bertdetr.bert.data.records import iter_examples
from bertdetr.training.checkpoint import list_checkpoints, load_checkpoint
from bertdetr.cli import main
from bertdetr.errors import BertDetrError

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
GLUE = os.path.join(DATA, "glue")
VOCAB = os.path.join(DATA, "vocab-uncased.txt")
TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128)


@pytest.fixture(scope="module")
def bert_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "bert_config.json"
    path.write_text(json.dumps(BertConfig(**TINY).to_google_dict()))
    return str(path)


def _args(task, data, out, bert_config, *extra):
    return ["bert", "classify", "--task-name", task, "--data-dir", data, "--output-dir", str(out),
            "--vocab-file", VOCAB, "--bert-config-file", bert_config, "--max-seq-length", "64",
            "--no-progress", *extra]


def _config(bert_config, out, **kw):
    base = dict(task_name="mrpc", data_dir=os.path.join(GLUE, "MRPC"), output_dir=str(out), vocab_file=VOCAB,
                bert_config_file=bert_config, max_seq_length=64, do_train=True, train_batch_size=2,
                num_train_epochs=2, learning_rate=1e-3, save_checkpoints_steps=2, progress=False)
    base.update(kw)
    return ClassifierConfig(**base)


def test_features_only_writes_googles_records(bert_config, tmp_path):
    assert main(_args("mnli", os.path.join(GLUE, "MNLI"), tmp_path, bert_config, "--max-seq-length", "128",
                      "--do-train", "--do_eval=true", "--do-predict", "--features-only")) == 0
    assert sorted(os.listdir(tmp_path)) == ["eval.tf_record", "predict.tf_record", "train.tf_record"]
    for ours, split in (("train", "train"), ("eval", "dev"), ("predict", "test")):
        a = list(iter_examples(tmp_path / f"{ours}.tf_record"))
        b = list(iter_examples(os.path.join(GLUE, "golden", f"mnli-{split}-128.tf_record")))
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert {k: list(v) for k, v in x.items()} == {k: list(v) for k, v in y.items()}


def test_run_writes_the_bytes_of_googles_file_based_function(bert_config, tmp_path):
    """The run writes each record while the features stream into tensors; the readable reference
    under Google's name, ``file_based_convert_examples_to_features``, writes the same bytes."""
    from bertdetr.bert.data.tokenization import FullTokenizer
    from bertdetr.bert.finetuning.classifier_data import MrpcProcessor, file_based_convert_examples_to_features

    assert main(_args("mrpc", os.path.join(GLUE, "MRPC"), tmp_path, bert_config, "--do-train",
                      "--features-only")) == 0
    processor = MrpcProcessor()
    examples = processor.get_train_examples(os.path.join(GLUE, "MRPC"))
    reference = tmp_path / "reference.tf_record"
    file_based_convert_examples_to_features(examples, processor.get_labels(), 64,
                                            FullTokenizer(VOCAB, do_lower_case=True), str(reference))
    assert reference.read_bytes() == (tmp_path / "train.tf_record").read_bytes()


def test_train_eval_predict_outputs_in_googles_layout(bert_config, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    assert main(_args("mrpc", os.path.join(GLUE, "MRPC"), tmp_path, bert_config, "--do-train", "--do-eval",
                      "--do-predict", "--train-batch-size", "2", "--num-train-epochs", "2",
                      "--learning_rate", "1e-3")) == 0
    lines = (tmp_path / "eval_results.txt").read_text().splitlines()
    assert [line.split(" = ")[0] for line in lines] == ["eval_accuracy", "eval_loss", "global_step", "loss"]
    result = {line.split(" = ")[0]: float(line.split(" = ")[1]) for line in lines}
    assert result["global_step"] == 6  # int(6 examples / 2 * 2 epochs)
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert set(metrics) >= {"eval_accuracy", "eval_loss", "accuracy", "f1", "global_step", "num_examples"}
    assert metrics["num_examples"] == 4 and metrics["accuracy"] == result["eval_accuracy"]
    rows = [line.split("\t") for line in (tmp_path / "test_results.tsv").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r) == 2 for r in rows)
    probs = np.array(rows, dtype=np.float64)
    assert np.allclose(probs.sum(1), 1, atol=1e-6)
    # the exported model is transformers' BertForSequenceClassification, giving the same probabilities
    hf = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    feats = list(iter_examples(tmp_path / "predict.tf_record"))
    ids = torch.tensor(np.stack([f["input_ids"] for f in feats]))
    mask = torch.tensor(np.stack([f["input_mask"] for f in feats]))
    seg = torch.tensor(np.stack([f["segment_ids"] for f in feats]))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=seg).logits.softmax(-1).numpy()
    assert np.allclose(ref, probs, atol=1e-5)
    assert hf.config.id2label == {0: "0", 1: "1"}
    # eval only, later: the latest checkpoint of the output dir is evaluated, as Google's estimator
    os.remove(tmp_path / "eval_results.txt")
    assert main(_args("mrpc", os.path.join(GLUE, "MRPC"), tmp_path, bert_config, "--do-eval")) == 0
    again = {line.split(" = ")[0]: float(line.split(" = ")[1])
             for line in (tmp_path / "eval_results.txt").read_text().splitlines()}
    assert again == pytest.approx(result, abs=1e-6)


def test_killed_run_resumes_to_the_same_weights(bert_config, tmp_path):
    whole = run_classifier(_config(bert_config, tmp_path / "whole"))
    assert whole["step"] == 6
    part = run_classifier(_config(bert_config, tmp_path / "part", stop_at_step=3))
    assert part["step"] == 3 and "export" not in part
    assert [s for s, _ in list_checkpoints(tmp_path / "part")] == [2, 3]
    with pytest.raises(BertDetrError, match="already has checkpoints.*--resume"):
        run_classifier(_config(bert_config, tmp_path / "part"))
    resumed = run_classifier(_config(bert_config, tmp_path / "part", resume=True))
    assert resumed["step"] == 6
    a = load_checkpoint(list_checkpoints(tmp_path / "whole")[-1][1])["model"]
    b = load_checkpoint(list_checkpoints(tmp_path / "part")[-1][1])["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_overwrite_trains_again_from_the_start(bert_config, tmp_path):
    whole = run_classifier(_config(bert_config, tmp_path / "whole"))
    part = run_classifier(_config(bert_config, tmp_path / "part", stop_at_step=3))
    assert part["step"] == 3
    (tmp_path / "part" / "scalars.csv").write_text("step,name,value\n99,loss,1\n")  # the old run's log
    with pytest.raises(BertDetrError, match="choose one"):
        _config(bert_config, tmp_path / "part", resume=True, overwrite=True)
    again = run_classifier(_config(bert_config, tmp_path / "part", overwrite=True))
    assert again["step"] == 6  # from step 0, not resumed at 3
    assert [s for s, _ in list_checkpoints(tmp_path / "part")] == [s for s, _ in list_checkpoints(tmp_path / "whole")]
    assert "99,loss" not in (tmp_path / "part" / "scalars.csv").read_text()
    a = load_checkpoint(list_checkpoints(tmp_path / "whole")[-1][1])["model"]
    b = load_checkpoint(list_checkpoints(tmp_path / "part")[-1][1])["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert whole["step"] == 6
    # the command: refused without a choice, trains again with --overwrite
    args = _args("mrpc", os.path.join(GLUE, "MRPC"), tmp_path / "part", bert_config, "--do-train",
                 "--train-batch-size", "2", "--num-train-epochs", "2", "--save-checkpoints-steps", "2")
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0


def test_overwrite_refuses_another_kind_of_run(bert_config, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "squad_config.json").write_text("{}")
    with pytest.raises(BertDetrError, match="holds a `bertdetr bert squad` run"):
        run_classifier(_config(bert_config, tmp_path / "run", overwrite=True))
    assert (tmp_path / "run" / "squad_config.json").exists()


def test_tsv_task_and_eval_with_labels_of_the_trained_model(bert_config, tmp_path):
    data = os.path.join(GLUE, "custom")
    cols = ["--text-a-column", "review", "--text-b-column", "product", "--label-column", "sentiment"]
    assert main(_args("tsv", data, tmp_path, bert_config, "--do-train", "--train-batch-size", "3", *cols)) == 0
    assert json.loads((tmp_path / "model" / "config.json").read_text())["id2label"] == {
        "0": "negative", "1": "positive"}
    assert main(_args("tsv", data, tmp_path, bert_config, "--do-eval", "--do-predict", *cols)) == 0
    assert len((tmp_path / "test_results.tsv").read_text().splitlines()) == 2
    # fine-tuned directory as --init-checkpoint elsewhere: labels and weights from it
    other = tmp_path / "other"
    assert main(["bert", "classify", "--task-name", "tsv", "--data-dir", data, "--output-dir", str(other),
                 "--init-checkpoint", str(tmp_path / "model"), "--do-eval", "--no-progress", *cols]) == 0
    assert json.loads((other / "eval_metrics.json").read_text())["eval_accuracy"] == pytest.approx(
        json.loads((tmp_path / "eval_metrics.json").read_text())["eval_accuracy"])


def test_fine_tunes_from_a_masked_lm_directory(bert_config, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    mlm = transformers.BertForMaskedLM(transformers.BertConfig(**TINY))
    mlm.save_pretrained(tmp_path / "mlm")
    shutil.copyfile(VOCAB, tmp_path / "mlm" / "vocab.txt")
    with pytest.warns(UserWarning, match="no pooler"):
        summary = run_classifier(ClassifierConfig(
            task_name="cola", data_dir=os.path.join(GLUE, "CoLA"), output_dir=str(tmp_path / "out"),
            init_checkpoint=str(tmp_path / "mlm"), max_seq_length=32, do_train=True, do_eval=True,
            train_batch_size=4, num_train_epochs=1, progress=False))
    assert "matthews_corrcoef" in summary["eval"]
    # the encoder was loaded: the fine-tuned word embeddings started from transformers'
    state = load_checkpoint(list_checkpoints(tmp_path / "out")[-1][1])["model"]
    start = mlm.bert.embeddings.word_embeddings.weight.detach()
    assert (state["bert.embeddings.word_embeddings.weight"] - start).abs().max() < 1e-3


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


@pytest.mark.parametrize("case", ["columns", "label", "empty"])
def test_bad_input_exits_2_naming_file_and_line_and_writes_nothing(bert_config, tmp_path, capsys, case):
    data = tmp_path / "data"
    data.mkdir()
    good = "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
    if case == "columns":
        (data / "train.tsv").write_text(good + good + "gj04\t0\tThey drank the pub.\n" + good)
        expected = r"train\.tsv:3: row has 3 column\(s\), expected 4"
    elif case == "label":
        (data / "train.tsv").write_text(good + "gj04\t1\t\tFine.\n")
        (data / "dev.tsv").write_text(good + "gj04\tyes\t\tUnknown label.\n")
        expected = r"dev\.tsv:2: label 'yes' is not one of the task's labels '0', '1'"
    else:
        expected = r"data dir .* is empty"
    out = tmp_path / "out"
    code = main(_args("cola", str(data), out, bert_config, "--do-train", "--do-eval"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("bertdetr: error: ") and "Traceback" not in err
    import re

    assert re.search(expected, err), err
    assert not os.path.exists(out) or _tree(out) == []


def test_other_errors(bert_config, tmp_path):
    with pytest.raises(BertDetrError, match="At least one of"):
        _config(bert_config, tmp_path, do_train=False)
    with pytest.raises(BertDetrError, match="Cannot use sequence length 512"):
        run_classifier(_config(bert_config, tmp_path, max_seq_length=512))
    with pytest.raises(BertDetrError, match="no test set"):
        run_classifier(_config(bert_config, tmp_path, task_name="xnli", data_dir=os.path.join(GLUE, "XNLI"),
                               do_train=False, do_predict=True, init_checkpoint=None))


def test_metrics():
    y = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([1, 0, 0, 1, 1, 0])
    assert f1_score(y, p) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert matthews_corrcoef(y, p) == pytest.approx((2 * 2 - 1 * 1) / np.sqrt(3 * 3 * 3 * 3))
    assert matthews_corrcoef(y, np.ones(6, int)) == 0.0
    assert glue_metrics("mnli", y, p) == {"accuracy": pytest.approx(4 / 6)}
    try:
        from sklearn.metrics import f1_score as f1, matthews_corrcoef as mcc
    except ImportError:
        return
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
        assert f1_score(y, p) == pytest.approx(f1(y, p))
        assert matthews_corrcoef(y, p) == pytest.approx(mcc(y, p))


def test_train_batches_cover_each_epoch_once_and_cross_epochs():
    n, bs = 7, 3
    stream = [i for step in range(7) for i in train_batch_indices(n, bs, 5, step)]  # 21 = 3 epochs
    for e in range(3):
        assert sorted(stream[e * n:(e + 1) * n]) == list(range(n))
    assert train_batch_indices(n, bs, 5, 2) == train_batch_indices(n, bs, 5, 2)
    assert stream[:n] != stream[n:2 * n]


def test_kill_during_checkpoint_or_feature_write_leaves_nothing_partial(bert_config, tmp_path, monkeypatch):
    run_classifier(_config(bert_config, tmp_path, stop_at_step=2))

    def dying_save(obj, f, *a, **kw):
        f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run_classifier(_config(bert_config, tmp_path, resume=True))
    monkeypatch.undo()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert run_classifier(_config(bert_config, tmp_path, resume=True))["step"] == 6

    from bertdetr.bert.finetuning import classifier

    calls = []

    def dying_write(f, data):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        f.write(data)

    out = tmp_path / "features"
    monkeypatch.setattr(classifier, "write_record", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run_classifier(_config(bert_config, out, features_only=True))
    assert _tree(out) == []


def test_fine_tuned_head_with_labels_in_another_order_is_permuted(bert_config, tmp_path):
    from bertdetr.bert.finetuning.classifier import _align_head_labels, create_model

    torch.manual_seed(0)
    m = create_model(BertConfig(**TINY), ["contradiction", "entailment", "neutral"])
    w, b = m.output_weights.detach().clone(), m.output_bias.detach().clone() + torch.tensor([1.0, 2.0, 3.0])
    with torch.no_grad():
        m.output_bias.copy_(b)
    _align_head_labels(m, ["entailment", "neutral", "contradiction"], "ckpt")
    assert torch.equal(m.output_weights[0], w[2]) and torch.equal(m.output_bias, b[[2, 0, 1]])
    _align_head_labels(m, ["LABEL_0", "LABEL_1", "LABEL_2"], "ckpt")  # unnamed: task order
    assert torch.equal(m.output_bias, b[[2, 0, 1]])
    with pytest.raises(BertDetrError, match="fine-tuned for labels"):
        _align_head_labels(m, ["yes", "no", "maybe"], "ckpt")


def test_help_shows_googles_flags_and_defaults(capsys):
    import re

    with pytest.raises(SystemExit):
        main(["bert", "classify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("max_seq_length", "128"), ("train_batch_size", "32"), ("eval_batch_size", "8"),
                          ("predict_batch_size", "8"), ("learning_rate", "5e-05"), ("num_train_epochs", "3.0"),
                          ("warmup_proportion", "0.1"), ("save_checkpoints_steps", "1000")):
        dashed = flag.replace("_", "-")
        assert re.search(rf"--{dashed} \S*, --{flag} (?:(?! --[a-z]).)*?\(default: {re.escape(default)}\)", text), flag
    # Google's default, True, unless the init checkpoint's tokenizer was saved otherwise (a cased model)
    assert "default: as --init-checkpoint's tokenizer was saved, else True." in text


def test_sigterm_checkpoints_the_step_and_resume_finishes(bert_config, tmp_path):
    import signal

    from tests.training.test_folder import _run_until

    out = tmp_path / "out"
    args = _args("mrpc", os.path.join(GLUE, "MRPC"), out, bert_config, "--do-train", "--train-batch-size", "1",
                 "--num-train-epochs", "60", "--save-checkpoints-steps", "1000", "--log-every", "1")
    status, err = _run_until(args, out, signal.SIGTERM)
    assert status == 143, err[-2000:]
    step = list_checkpoints(out)[-1][0]
    assert step < 360 and f"stopped by SIGTERM at step {step}" in err
    assert main(args + ["--resume"]) == 0
    assert list_checkpoints(out)[-1][0] == 360 and (out / "model" / "model.safetensors").is_file()


def test_eval_every_logs_mrpcs_metrics_while_training_as_it_trained_before(bert_config, tmp_path):
    """``--eval-every``: the dev set's loss, accuracy and MRPC's F1 logged while training (dropout
    on); the training itself is the same, bit for bit (evaluating draws no random numbers)."""
    from bertdetr.training.scalars import read_scalars

    plain = run_classifier(_config(bert_config, tmp_path / "plain", do_eval=True))
    evaluated = run_classifier(_config(bert_config, tmp_path / "evaluated", do_eval=True, eval_every=2))
    rows = read_scalars(tmp_path / "evaluated" / "scalars.csv")
    assert [s for s, _ in rows["eval_f1"]] == [2, 4] and {"eval_loss", "eval_accuracy"} <= set(rows)
    assert evaluated["eval"] == plain["eval"]
    a = load_checkpoint(list_checkpoints(tmp_path / "plain")[-1][1])["model"]
    b = load_checkpoint(list_checkpoints(tmp_path / "evaluated")[-1][1])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_casing_comes_from_the_init_checkpoint(bert_config, tmp_path):
    """A cased model's folder (tokenizer_config.json: do_lower_case false) is fine-tuned cased when
    the flag is left out, and exported so; a flag that contradicts it, or a Google checkpoint's
    name (its validate_case_matches_checkpoint), is an error before any work."""
    from bertdetr.bert.model import build_bert_model
    from bertdetr.bert.finetuning.init_checkpoint import resolve_do_lower_case
    from bertdetr.bert.weights import export_model

    cased = tmp_path / "cased"
    model = build_bert_model(BertConfig(**TINY))
    export_model(model, cased, VOCAB, do_lower_case=False)
    run_classifier(_config(bert_config, tmp_path / "out", init_checkpoint=str(cased), bert_config_file=None,
                           vocab_file=None, num_train_epochs=0.5))
    saved = json.loads((tmp_path / "out" / "model" / "tokenizer_config.json").read_text())
    assert saved["do_lower_case"] is False
    assert json.loads((tmp_path / "out" / "classify_config.json").read_text())["do_lower_case"] is False
    with pytest.raises(BertDetrError, match="--do-lower-case=True but .*saved with do_lower_case False"):
        run_classifier(_config(bert_config, tmp_path / "out2", init_checkpoint=str(cased), do_lower_case=True))
    assert not (tmp_path / "out2").exists()
    assert resolve_do_lower_case(None, None) is True and resolve_do_lower_case(False, None) is False
    with pytest.raises(BertDetrError, match="`cased_L-12_H-768_A-12` seems to be a cased model"):
        resolve_do_lower_case(None, "/models/cased_L-12_H-768_A-12/bert_model.ckpt")
    assert resolve_do_lower_case(False, "/models/cased_L-12_H-768_A-12/bert_model.ckpt") is False


def test_a_run_folder_is_named_and_a_finished_run_evaluates_with_its_own_model(bert_config, tmp_path, capsys):
    """--init-checkpoint a run folder (its model in model/): said so; --do-eval of a finished run with
    neither --init-checkpoint nor --bert-config-file: the model it exported gives the config and vocabulary."""
    out = tmp_path / "out"
    run_classifier(_config(bert_config, out, num_train_epochs=0.5))
    with pytest.raises(BertDetrError, match=r"out is a run folder; its model is .*out/model \(give --init-checkpoint that\)"):
        run_classifier(_config(bert_config, tmp_path / "again", init_checkpoint=str(out), bert_config_file=None,
                               vocab_file=None))
    summary = run_classifier(_config(bert_config, out, do_train=False, do_eval=True, bert_config_file=None,
                                     vocab_file=None))
    assert "eval_accuracy" in summary["eval"]


def test_tokenizer_settings_of_the_init_folder_that_cannot_be_honoured_are_refused(bert_config, tmp_path):
    """An --init-checkpoint folder whose transformers tokenizer keeps accents while lowercasing (or
    adds tokens outside vocab.txt) would be fine-tuned on other tokens than it was pretrained on:
    refused before any work, as `bert fill-mask` refuses it; its vocabulary given elsewhere, it runs."""
    from bertdetr.bert.model import build_bert_model
    from bertdetr.bert.weights import export_model

    folder = tmp_path / "model"
    export_model(build_bert_model(BertConfig(**TINY)), folder, VOCAB, do_lower_case=True)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "strip_accents": False}))
    with pytest.raises(BertDetrError, match="strip_accents=False with do_lower_case=True"):
        run_classifier(_config(bert_config, tmp_path / "out", init_checkpoint=str(folder), bert_config_file=None,
                               vocab_file=None))
    assert not (tmp_path / "out").exists()
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    (folder / "added_tokens.json").write_text(json.dumps({"<new>": 99999}))
    with pytest.raises(BertDetrError, match=r"added tokens outside vocab.txt \(<new>"):
        run_classifier(_config(bert_config, tmp_path / "out", init_checkpoint=str(folder), bert_config_file=None,
                               vocab_file=None))
    run_classifier(_config(bert_config, tmp_path / "out", init_checkpoint=str(folder), bert_config_file=None,
                           vocab_file=VOCAB, num_train_epochs=0.5))


def test_evaluating_a_run_stopped_before_its_export(bert_config, tmp_path):
    """--do-eval of a run stopped (stop_at_step, SIGTERM) before it exported model/: with neither
    --init-checkpoint nor --bert-config-file the model files its recorded config names are used
    (was "no model config (none given)"), and evaluating its checkpoint says the run is unfinished."""
    out = tmp_path / "out"
    run_classifier(_config(bert_config, out, stop_at_step=2))
    assert not (out / "model").exists()
    with pytest.warns(UserWarning, match="its run stopped before it finished .* checkpoint at step 2; its training "
                                         "command again with --resume finishes it"):
        summary = run_classifier(_config(bert_config, out, do_train=False, do_eval=True, bert_config_file=None,
                                         vocab_file=None))
    assert "eval_accuracy" in summary["eval"]

"""``bertdetr bert squad`` end to end on a tiny model: features, training, resume, predictions, scores,
and the bad inputs of the issue (each an error naming the file, exit 2, nothing written)."""

import json
import re
import shutil

import pytest
import torch

from bertdetr.bert.heads import BertForQuestionAnswering
from bertdetr.bert.model import BertConfig, build_bert_model
from bertdetr.bert.data.records import iter_examples
from bertdetr.cli import main
from tests.conftest import DATA

SQUAD = DATA / "bert" / "squad"
WINDOWS = ["--max-seq-length", "64", "--doc-stride", "24", "--max-query-length", "16"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random BERT over the bert-base-uncased vocab, as a HF-format directory with vocab.txt."""
    path = tmp_path_factory.mktemp("tiny") / "bert"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    build_bert_model(config).save_pretrained(path)
    shutil.copyfile(DATA / "bert" / "vocab-uncased.txt", path / "vocab.txt")
    return str(path)


def _run(tiny_model, out, *extra, version="v1.1", train=True, predict=True):
    args = ["bert", "squad", "--init-checkpoint", tiny_model, "--output-dir", str(out), *WINDOWS,
            "--train-batch-size", "4", "--num-train-epochs", "1", "--learning-rate", "1e-3", "--no-progress"]
    if train:
        args += ["--do-train", "--train-file", str(SQUAD / f"train-{version}.json")]
    if predict:
        args += ["--do_predict=true", "--predict_file", str(SQUAD / f"dev-{version}.json")]
    if version == "v2.0":
        args.append("--version-2-with-negative")
    return main(args + list(extra))


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path / "model" / "model.safetensors")


def test_train_and_predict_v1(tiny_model, tmp_path):
    transformers = pytest.importorskip("transformers")
    with pytest.warns(UserWarning, match="skipped 2 training question"):
        assert _run(tiny_model, tmp_path) == 0
    for name in ("train.tf_record", "eval.tf_record", "predictions.json", "nbest_predictions.json",
                 "eval_metrics.json"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / "null_odds.json").exists()
    assert len(list(iter_examples(str(tmp_path / "eval.tf_record")))) == 319  # as Google's 64/24/16 windows
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert set(metrics) == {"version", "exact_match", "f1", "global_step"} and metrics["global_step"] == 6
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions) == 24 and all(isinstance(v, str) for v in predictions.values())
    scalars = (tmp_path / "scalars.csv").read_text()
    assert "start_loss" in scalars
    # The exported model is transformers' BertForQuestionAnswering, and predicts as ours did.
    hf = transformers.BertForQuestionAnswering.from_pretrained(tmp_path / "model").eval()
    ours = BertForQuestionAnswering.from_pretrained(tmp_path / "model").eval()
    x = torch.randint(1, 30522, (2, 20))
    assert torch.allclose(hf(input_ids=x).start_logits, ours(input_ids=x)["start_logits"], atol=1e-5)


def test_predict_v2_with_the_trained_model(tiny_model, tmp_path):
    with pytest.warns(UserWarning):
        assert _run(tiny_model, tmp_path, version="v2.0") == 0
    odds = json.loads((tmp_path / "null_odds.json").read_text())
    assert len(odds) == 30
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert {"exact", "f1", "total", "HasAns_exact", "NoAns_exact", "best_f1", "best_f1_thresh"} <= set(metrics)
    # Predicting again from the output dir's checkpoint (no training) gives the same predictions.
    first = (tmp_path / "predictions.json").read_text()
    (tmp_path / "predictions.json").unlink()
    assert _run(tiny_model, tmp_path, version="v2.0", train=False) == 0
    assert (tmp_path / "predictions.json").read_text() == first


def test_features_only(tiny_model, tmp_path):
    with pytest.warns(UserWarning):
        assert _run(tiny_model, tmp_path, "--features-only", version="v2.0") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.tf_record", "train.tf_record"]
    records = list(iter_examples(str(tmp_path / "train.tf_record")))
    assert len(records) == 394 and records[0]["unique_ids"][0] == 1000000000
    assert {int(r["is_impossible"][0]) for r in records} == {0, 1}


def test_a_killed_training_run_resumes(tiny_model, tmp_path, monkeypatch):
    """Killed after step 3 (checkpoint at step 2), resumed: the final weights of an uninterrupted run."""
    from bertdetr.bert.optimization import AdamWeightDecay

    with pytest.warns(UserWarning):
        assert _run(tiny_model, tmp_path / "whole", predict=False) == 0
    original = AdamWeightDecay.update  # (the trainer's clip_and_update calls it)
    calls = []

    def dying_step(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(AdamWeightDecay, "update", dying_step)
    with pytest.warns(UserWarning):
        assert _run(tiny_model, tmp_path / "killed", "--save-checkpoints-steps", "2", predict=False) == 130
    monkeypatch.setattr(AdamWeightDecay, "update", original)
    assert not (tmp_path / "killed" / "model").exists()
    assert sorted(p.name for p in (tmp_path / "killed").glob("ckpt-*")) == ["ckpt-00000002.pt"]
    with pytest.warns(UserWarning):
        assert _run(tiny_model, tmp_path / "killed", predict=False) == 2  # checkpoints there: --resume needed
    with pytest.warns(UserWarning):
        assert _run(tiny_model, tmp_path / "killed", "--resume", "--save-checkpoints-steps", "2", predict=False) == 0
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    # --overwrite trains again from step 0 (the same weights again), deleting the old checkpoints first
    (tmp_path / "killed" / "ckpt-00000099.pt").write_bytes(b"an old run's")
    with pytest.warns(UserWarning):
        assert _run(tiny_model, tmp_path / "killed", "--overwrite", predict=False) == 0
    assert not (tmp_path / "killed" / "ckpt-00000099.pt").exists()
    c = _weights(tmp_path / "killed")
    assert all(torch.equal(a[k], c[k]) for k in a)


# ---- bad input: exit 2, an error naming the file, nothing under final names ---------------------


@pytest.mark.parametrize("case", ["not-squad", "not-json", "v2-without-flag", "query-room", "stride", "no-steps"])
def test_bad_input(tiny_model, tmp_path, capsys, case):
    out = tmp_path / "out"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"text": "hello"}]}) if case == "not-squad" else '{"data": [', "utf-8")
    files = {"not-squad": str(bad), "not-json": str(bad), "v2-without-flag": str(SQUAD / "train-v2.0.json")}
    extra = {"query-room": ["--max-seq-length", "40", "--max-query-length", "40"],
             "stride": ["--doc-stride", "64"], "no-steps": ["--num-train-epochs", "0.01"]}.get(case, [])
    args = ["bert", "squad", "--init-checkpoint", tiny_model, "--output-dir", str(out), "--do-train",
            "--train-file", files.get(case, str(SQUAD / "train-v1.1.json")), "--do-predict",
            "--predict-file", str(SQUAD / "dev-v1.1.json"), "--no-progress", *WINDOWS, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: ")
    expected = {"not-squad": r"bad.json: not a SQuAD file", "not-json": r"bad.json:1:11: not JSON",
                "v2-without-flag": r"train-v2.0.json, line 116: data\[0\]\.paragraphs\[0\]\.qas\[9\] \(id 'holmes-x1'\).*"
                                   r"--version-2-with-negative",
                "query-room": r"--max-seq-length 40 is too small for the question",
                "stride": r"--doc-stride 64 is larger than the room left for the document \(45 tokens",
                "no-steps": r"train-v1.1.json: 24 training examples in batches of 32 for 0.01 epochs make no"}[case]

    assert re.search(expected, err), err
    assert not out.exists() or not any(p for p in out.iterdir() if not p.name.startswith("."))


def test_googles_flags_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["bert", "squad", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:"):]
    for flag, default in (("--max-seq-length", "384"), ("--doc-stride", "128"), ("--max-query-length", "64"),
                          ("--train-batch-size", "32"), ("--predict-batch-size", "8"), ("--learning-rate", "5e-05"),
                          ("--num-train-epochs", "3.0"), ("--warmup-proportion", "0.1"), ("--n-best-size", "20"),
                          ("--max-answer-length", "30"), ("--null-score-diff-threshold", "0.0")):
        after = text[text.index(flag + " "):]
        assert after[after.index("(default: "):].startswith(f"(default: {default})"), flag
    assert "default: as --init-checkpoint's tokenizer was saved, else True." in text  # (Google's True otherwise)
    # false flags show no default (bertdetr.options.DefaultsHelpFormatter), as every command's
    assert "--version-2-with-negative [BOOL]" in text
    from bertdetr.bert.cli import _absl_bool  # Google's spellings: --do_lower_case=False

    assert _absl_bool("False") is False

"""``bertdetr bert multiple-choice`` (C3): questions and features equal to those CLUE's own
``run_c3.py`` makes (``tests/data/bert/c3/golden``), the head against transformers'
``BertForMultipleChoice`` both ways, the command end to end with a tiny random BERT, and bad input
(exit 2, file, document and question named, nothing written)."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning.finetune import take_batch
from bertdetr.bert.finetuning.multiple_choice_data import (PAD_CHOICE, c3_files, convert_example_to_features,
                                                           read_c3)
from bertdetr.bert.heads import BertForMultipleChoice, BertForSequenceClassification
from bertdetr.bert.model import BertConfig, build_bert_model
from bertdetr.bert.weights import WeightsError
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from tests.bert.finetuning.conftest import VOCAB_ZH

C3 = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert", "c3")


def _golden(split, length):
    with open(os.path.join(C3, "golden", f"{split}-{length}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _args(data, out, bert_config, *extra):
    return ["bert", "multiple-choice", "--data-dir", str(data), "--output-dir", str(out), "--vocab-file", VOCAB_ZH,
            "--bert-config-file", bert_config, "--max-seq-length", "64", "--no-progress", *extra]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
@pytest.mark.parametrize("length", [64, 24])
def test_questions_and_features_equal_clues_run_c3(split, length):
    tokenizer = FullTokenizer(VOCAB_ZH, do_lower_case=True)
    examples = read_c3(c3_files(C3, split), split)
    golden = _golden(split, length)
    assert len(examples) == len(golden)
    for ex, g in zip(examples, golden):
        assert [f"{ex.guid}-{k}" for k in range(4)] == g["guids"]
        assert (ex.context, ex.question, ex.choices, ex.label) == (g["context"], g["question"], g["choices"], g["label"])
        rows = convert_example_to_features(ex, length, tokenizer)
        assert rows == {k: g[k] for k in ("input_ids", "input_mask", "segment_ids")}


def test_reading_pads_lowercases_and_takes_the_last_equal_choice():
    dev = read_c3(c3_files(C3, "dev"), "dev")
    assert dev[1].choices[-1] == PAD_CHOICE and dev[2].label == 2  # "海边" twice: CLUE's loop keeps the last
    train = read_c3(c3_files(C3, "train"), "train")
    assert "cpu" in train[-1].context and train[-1].choices[0] == "cpu"
    assert [t.source.split("c3-")[1] for t in read_c3(c3_files(C3, "test"), "test")] == [
        "d-test.json, document 0 (d5), question 0", "m-test.json, document 0 (m4), question 0"]


@pytest.fixture(scope="module")
def tiny_config():
    return BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


def _inputs(B=2, C=3, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 200, (B, C, T), generator=g)
    mask = torch.ones(B, C, T, dtype=torch.long)
    mask[0, :, 9:] = 0
    segments = torch.zeros(B, C, T, dtype=torch.long)
    segments[..., 5:] = 1
    return ids, mask, segments


def test_head_equals_transformers_both_ways(tiny_config, tmp_path):
    torch.manual_seed(0)
    ours = BertForMultipleChoice(build_bert_model(tiny_config), num_choices=3).eval()
    ours.save_pretrained(tmp_path / "ours")
    hf = transformers.BertForMultipleChoice.from_pretrained(tmp_path / "ours").eval()
    ids, mask, segments = _inputs()
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        got = ours(input_ids=ids, input_mask=mask, segment_ids=segments, label_ids=labels)
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=segments, labels=labels)
    torch.testing.assert_close(got["logits"], want.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["loss"], want.loss, atol=1e-6, rtol=1e-6)
    hf.save_pretrained(tmp_path / "hf")
    back = BertForMultipleChoice.from_pretrained(tmp_path / "hf", num_choices=3).eval()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids, input_mask=mask, segment_ids=segments)["logits"], want.logits,
                                   atol=1e-5, rtol=1e-5)


def test_a_one_label_sentence_classifier_is_not_taken_for_the_head(tiny_config, tmp_path):
    BertForSequenceClassification(build_bert_model(tiny_config), ["only"]).save_pretrained(tmp_path / "cls")
    with pytest.raises(WeightsError, match="not a BertForMultipleChoice"):
        BertForMultipleChoice.from_pretrained(tmp_path / "cls")


def test_batches_of_questions_are_cut_to_their_longest_choice():
    data = {"input_ids": torch.ones(3, 4, 10, dtype=torch.int32), "input_mask": torch.zeros(3, 4, 10, dtype=torch.int32),
            "segment_ids": torch.zeros(3, 4, 10, dtype=torch.int32), "label_ids": torch.tensor([0, 1, 2])}
    data["input_mask"][1, 2, :7] = 1
    batch = take_batch(data, [0, 1], torch.device("cpu"))
    assert batch["input_ids"].shape == (2, 4, 7) and batch["label_ids"].tolist() == [0, 1]


def test_trains_evaluates_and_writes_clues_submission(zh_bert_config, tmp_path):
    out = tmp_path / "out"
    assert main(_args(C3, out, zh_bert_config, "--do-train", "--do-eval", "--do-predict", "--train-batch-size", "2",
                      "--num-train-epochs", "3", "--learning-rate", "1e-3")) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["num_examples"] == 3 and 0 <= metrics["eval_accuracy"] <= 1 and metrics["global_step"] == 10
    probabilities = np.loadtxt(out / "test_results.tsv", delimiter="\t")
    assert probabilities.shape == (2, 4) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert json.loads((out / "submission_test.json").read_text()) == probabilities.argmax(1).tolist()
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForMultipleChoice"]
    hf = transformers.BertForMultipleChoice.from_pretrained(out / "model")
    assert hf.classifier.weight.shape == (1, 32)
    # evaluating again from the run's checkpoint gives the same accuracy
    again = tmp_path / "again"
    shutil.copytree(out, again)
    assert main(_args(C3, again, zh_bert_config, "--do-eval")) == 0
    assert json.loads((again / "eval_metrics.json").read_text())["eval_accuracy"] == metrics["eval_accuracy"]


def test_a_test_set_without_answers_is_answered(tmp_path):
    data = tmp_path / "c3"
    shutil.copytree(C3, data)
    docs = json.loads((data / "c3-m-test.json").read_text(encoding="utf-8"))
    for doc in docs:
        for question in doc[1]:
            del question["answer"]
    (data / "c3-m-test.json").write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
    os.remove(data / "c3-d-test.json")  # one kind alone is read
    assert [e.label for e in read_c3(c3_files(str(data), "test"), "test")] == [0]


BAD = [
    ("c3-m-dev.json", [[["今天很热。"], [{"question": "天气怎么样？", "choice": ["冷", "热"], "answer": "下雨"}], "x1"]],
     "document 0 (x1), question 0: the answer '下雨' is none of the choices"),
    ("c3-m-dev.json", [[["今天很热。"], [{"question": "天气怎么样？", "choice": "冷热", "answer": "热"}], "x1"]],
     "question 0: a question is"),
    ("c3-m-dev.json", {"data": []}, "C3's file is a JSON list of documents"),
    ("c3-d-dev.json", [["今天很热。", [{"question": "?", "choice": ["a"], "answer": "a"}]]], "document 0: a C3 document is"),
    ("c3-m-dev.json", [[["热"], [{"question": "?", "choice": ["a", "b", "c", "d", "e"], "answer": "a"}], "x"]],
     "5 choices; --num-choices is 4"),
]


@pytest.mark.parametrize("name,content,message", BAD)
def test_bad_input_exits_2_naming_file_document_and_question(zh_bert_config, tmp_path, capsys, name, content, message):
    data = tmp_path / "c3"
    shutil.copytree(C3, data)
    (data / name).write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    assert main(_args(data, out, zh_bert_config, "--do-train", "--do-eval", "--features-only")) == 2
    err = capsys.readouterr().err
    assert message in err and name in err and "Traceback" not in err
    assert not out.exists() or not os.listdir(out)


def test_missing_files_are_named(zh_bert_config, tmp_path, capsys):
    assert main(_args(tmp_path, tmp_path / "out", zh_bert_config, "--do-eval")) == 2
    assert "no C3 dev file" in capsys.readouterr().err


def test_stopped_and_resumed_equals_uninterrupted_with_a_loader_worker(zh_bert_config, tmp_path):
    """[N,C,T] batches through the step loader's worker, a stop and --resume: the weights of an
    uninterrupted run."""
    common = ("--do-train", "--train-batch-size", "2", "--num-train-epochs", "2", "--learning-rate", "1e-3",
              "--num-workers", "1", "--save-checkpoints-steps", "3", "--pad-to-multiple-of", "8")
    stopped = tmp_path / "stopped"
    assert main(_args(C3, stopped, zh_bert_config, *common, "--stop-at-step", "3")) == 0
    assert not (stopped / "model").exists()
    assert main(_args(C3, stopped, zh_bert_config, *common, "--resume")) == 0
    whole = tmp_path / "whole"
    assert main(_args(C3, whole, zh_bert_config, *common)) == 0
    a = BertForMultipleChoice.from_pretrained(stopped / "model").state_dict()
    b = BertForMultipleChoice.from_pretrained(whole / "model").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_task_defaults_and_bad_options(tmp_path):
    from bertdetr.bert.finetuning.multiple_choice import MultipleChoiceConfig

    c3 = MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=C3, do_eval=True)
    assert (c3.max_seq_length, c3.num_choices) == (512, 4)  # CLUE's run_c3.py
    chid = os.path.join(os.path.dirname(C3), "chid")
    assert (lambda c: (c.max_seq_length, c.num_choices))(MultipleChoiceConfig(
        output_dir=str(tmp_path / "o"), data_dir=chid, task="chid", do_eval=True)) == (64, 10)  # run_multichoice_mrc.py
    with pytest.raises(BertDetrError, match="holds CHID's files \\(train_answer.json\\), not C3's: --task chid"):
        MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=chid, do_eval=True)
    with pytest.raises(BertDetrError, match="holds C3's files \\(c3-d-train.json\\), not CHID's: --task c3"):
        MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=C3, task="chid", do_eval=True)
    swag = os.path.join(os.path.dirname(C3), "swag")
    with pytest.raises(BertDetrError, match="holds SWAG's files \\(val.csv\\), not C3's: --task swag"):
        MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=swag, do_eval=True)
    assert MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=swag, task="swag",
                                do_eval=True).max_seq_length == 128
    with pytest.raises(BertDetrError, match="--task 'race': choose c3, chid or swag"):
        MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=C3, task="race", do_eval=True)
    with pytest.raises(BertDetrError, match="--num_choices must be >= 2"):
        MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=C3, num_choices=1, do_eval=True)
    with pytest.raises(BertDetrError, match="--max_seq_length must be >= 1"):
        MultipleChoiceConfig(output_dir=str(tmp_path / "o"), data_dir=C3, max_seq_length=0, do_eval=True)


def test_two_processes_train_as_one_with_their_global_batch(tmp_path):
    """torchrun with 2 processes of 2 questions each = one process with 2 micro-batches of 2 (no
    dropout: the same arithmetic up to the order of sums)."""
    import subprocess
    import sys

    from tests.bert.finetuning.test_finetune import _bert_config

    config = _bert_config(tmp_path)
    common = ("--do-train", "--do-eval", "--num-train-epochs", "2", "--learning-rate", "1e-3", "--device", "cpu")
    one = tmp_path / "one"
    assert main(_args(C3, one, config, *common, "--train-batch-size", "2", "--grad-accum", "2")) == 0
    two = tmp_path / "two"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "bertdetr.cli", *_args(C3, two, config, *common, "--train-batch-size", "2")],
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a = BertForMultipleChoice.from_pretrained(one / "model").state_dict()
    b = BertForMultipleChoice.from_pretrained(two / "model").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)
    ma, mb = (json.loads((d / "eval_metrics.json").read_text()) for d in (one, two))
    assert mb["global_step"] == ma["global_step"] == 3  # int(7 questions / 4 * 2 epochs)
    assert mb["eval_accuracy"] == ma["eval_accuracy"]


def test_clues_zip_names_are_read_too(tmp_path):
    """CLUE's c3_public.zip names the files d-train.json, m-dev.json... and the test set test1.1.json
    (test1.0.json before it); C3's own names (c3-d-train.json, as run_c3.py reads) come first."""
    data = tmp_path / "c3"
    data.mkdir()
    for name in os.listdir(C3):
        if name.startswith("c3-") and "test" not in name:
            shutil.copy(os.path.join(C3, name), data / name[3:])  # d-train.json ...
    with open(os.path.join(C3, "c3-d-test.json"), encoding="utf-8") as f:
        d_test = json.load(f)
    with open(os.path.join(C3, "c3-m-test.json"), encoding="utf-8") as f:
        (data / "test1.1.json").write_text(json.dumps(d_test + json.load(f), ensure_ascii=False), encoding="utf-8")
    (data / "test1.0.json").write_text(json.dumps(d_test, ensure_ascii=False), encoding="utf-8")
    assert [os.path.basename(p) for p in c3_files(str(data), "train")] == ["d-train.json", "m-train.json"]
    assert [os.path.basename(p) for p in c3_files(str(data), "test")] == ["test1.1.json"]
    ours = read_c3(c3_files(str(data), "train"), "train")
    assert [(e.context, e.choices, e.label) for e in ours] == [
        (e.context, e.choices, e.label) for e in read_c3(c3_files(C3, "train"), "train")]
    assert len(read_c3(c3_files(str(data), "test"), "test")) == 2
    shutil.copy(os.path.join(C3, "c3-d-train.json"), data / "c3-d-train.json")
    assert [os.path.basename(p) for p in c3_files(str(data), "train")] == ["c3-d-train.json"]
    with pytest.raises(BertDetrError, match="no C3 dev file .*looked for c3-d-dev.json, c3-m-dev.json, d-dev.json"):
        c3_files(str(tmp_path), "dev")

"""``bertdetr bert multiple-choice --task swag`` (the BERT paper's multiple-choice task): features
equal to what transformers' ``run_swag.py`` tokenizes (its ``preprocess_function``, run here with
transformers' tokenizer of the same vocabulary), the command end to end with a tiny random BERT,
and bad input named."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import transformers

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning.multiple_choice_data import (convert_swag_example, examples_to_tensors, read_swag,
                                                           swag_file, truncate_longest_first)
from bertdetr.bert.model import BertConfig
from bertdetr.cli import main
from bertdetr.errors import BertDetrError

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
SWAG = os.path.join(DATA, "swag")
VOCAB = os.path.join(DATA, "vocab-uncased.txt")


def _hf_tokenizer():
    """The tokenizer run_swag.py gets from AutoTokenizer: the fast (Rust) one, whose pair truncation
    is the reference (transformers 4's Python one cuts a pair otherwise). transformers 5's
    BertTokenizer is the fast one."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        return transformers.BertTokenizer(VOCAB, do_lower_case=True)
    return transformers.BertTokenizerFast(vocab_file=VOCAB, do_lower_case=True)


def _run_swag_features(path, max_seq_length):
    """run_swag.py's preprocess_function on the file's rows, with transformers' BertTokenizer of VOCAB."""
    tokenizer = _hf_tokenizer()
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    first = [row["sent1"] for row in rows for _ in range(4)]
    second = [f"{row['sent2']} {row[f'ending{k}']}" for row in rows for k in range(4)]
    out = tokenizer(first, second, truncation=True, max_length=max_seq_length)
    return [{k: out[k][i:i + 4] for k in ("input_ids", "token_type_ids")} for i in range(0, len(first), 4)]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
@pytest.mark.parametrize("length", [64, 16])
def test_features_equal_run_swags_tokenizer_call(split, length):
    path = swag_file(SWAG, split)
    examples = read_swag(path, split)
    data = examples_to_tensors(examples, length, FullTokenizer(VOCAB, do_lower_case=True), convert_swag_example)
    for n, want in enumerate(_run_swag_features(path, length)):
        for c in range(4):
            k = len(want["input_ids"][c])
            assert data["input_ids"][n, c, :k].tolist() == want["input_ids"][c], (split, n, c)
            assert data["segment_ids"][n, c, :k].tolist() == want["token_type_ids"][c]
            assert data["input_mask"][n, c].sum() == k and not data["input_ids"][n, c, k:].any()
    assert [e.label for e in examples] == ([0, 1, 2, 3, 0, 1] if split == "train" else [2, 1, 0] if split == "dev"
                                           else [0, 0])


def test_pairs_are_cut_as_transformers_tokenizers_cut_them():
    tokenizer = _hf_tokenizer()
    for na in range(1, 10):
        for nb in range(1, 10):
            for budget in range(2, na + nb + 1):
                out = tokenizer(" ".join(["cat"] * na), " ".join(["dog"] * nb), truncation=True,
                                max_length=budget + 3)
                tokens = tokenizer.convert_ids_to_tokens(out["input_ids"])
                a, b = ["cat"] * na, ["dog"] * nb
                truncate_longest_first(a, b, budget)
                assert (len(a), len(b)) == (tokens.count("cat"), tokens.count("dog")), (na, nb, budget)


def test_swag_trains_and_evaluates(tmp_path, capsys):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=64,
                                            max_position_embeddings=64).to_google_dict()))
    out = tmp_path / "out"
    assert main(["bert", "multiple-choice", "--task", "swag", "--data-dir", SWAG, "--output-dir", str(out),
                 "--vocab-file", VOCAB, "--bert-config-file", str(config), "--max-seq-length", "32", "--do-train",
                 "--do-eval", "--do-predict", "--train-batch-size", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["task"] == "swag" and metrics["num_examples"] == 3 and metrics["global_step"] == 9
    assert np.loadtxt(out / "test_results.tsv", delimiter="\t").shape == (2, 4)
    assert not (out / "submission_test.json").exists()
    assert f"answered 2 questions -> {out}: test_results.tsv" in capsys.readouterr().out


def test_bad_swag_files_are_named(tmp_path):
    data = tmp_path / "swag"
    shutil.copytree(SWAG, data)
    (data / "val.csv").write_text("sent1,sent2,ending0,ending1,ending2,ending3,label\na,b,c,d,e,f,7\n")
    with pytest.raises(BertDetrError, match=r"val.csv:2: label '7' is not a choice index 0..3"):
        read_swag(swag_file(str(data), "dev"), "dev")
    (data / "val.csv").write_text("sent1,sent2,ending0,ending1,label\na,b,c,d,1\n")
    with pytest.raises(BertDetrError, match=r"val.csv:1: no column 'ending2', 'ending3'"):
        read_swag(swag_file(str(data), "dev"), "dev")
    with pytest.raises(BertDetrError, match="no SWAG train file .*looked for train.csv"):
        swag_file(str(tmp_path), "train")

"""Golden SQuAD examples, features and predictions made by Google's own run_squad.py (bert-tensorflow 1.0.4).

Run once with a Python that has TensorFlow and bert-tensorflow 1.0.4 (never needed by the tests):

    /work/venvs/tf/bin/python tests/data/bert/squad/make_goldens.py

For each SQuAD file of this folder (``make_squad_json.py``), read with Google's
``read_squad_examples`` (training mode for train-*, prediction mode for dev-*; v2.0 files with
``--version_2_with_negative``) and the bert-base-uncased vocab (``../vocab-uncased.txt``), it writes
to ``golden/``:

All are gzipped (no time stamp) but the small predictions.json and null_odds.json:

- ``<file>.examples.jsonl``: the examples (one a line);
- ``<file>-<setting>.features.jsonl``: ``convert_examples_to_features`` of them (every field of
  Google's ``InputFeatures``), at Google's defaults ``384`` (max_seq_length 384, doc_stride 128,
  max_query_length 64) and ``64`` (64, 24, 16: many windows, truncated questions);
- ``train-<v>.tf_record`` and ``dev-<v>.tf_record``: Google's ``FeatureWriter`` output as its
  ``main`` writes ``train.tf_record`` (examples shuffled with ``random.Random(12345)`` first) and
  ``eval.tf_record``, at the defaults;
- ``dev-<v>-<setting>.logits.json``: fixed float32 logits for every dev feature (seeded random,
  raised at the gold answer's tokens in most windows and at [CLS] in some), and Google's
  ``write_predictions`` output for them: ``dev-<v>-<setting>[-t<threshold>].predictions.json``,
  ``.nbest_predictions.json`` and, for v2.0, ``.null_odds.json`` (thresholds 0.0 and -10.0),
  n_best_size 20, max_answer_length 30, do_lower_case True.
"""

import collections
import gzip
import io
import json
import os
import random
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

# bert/modeling.py (imported by run_squad) does `from tensorflow.contrib import layers`, which TF 2
# lacks; nothing here builds the model, so a placeholder lets the import through.
sys.modules.setdefault("tensorflow.contrib", types.ModuleType("tensorflow.contrib")).layers = None
from bert import run_squad, tokenization  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "vocab-uncased.txt")
OUT = os.path.join(HERE, "golden")
SETTINGS = {"384": (384, 128, 64), "64": (64, 24, 16)}
FILES = ("train-v1.1", "dev-v1.1", "train-v2.0", "dev-v2.0")


def set_flags(version2: bool, threshold: float = 0.0) -> None:
    tf.flags.FLAGS([sys.argv[0], f"--version_2_with_negative={version2}",
                    f"--null_score_diff_threshold={threshold}"])


def example_json(e) -> dict:
    return {"qas_id": e.qas_id, "question_text": e.question_text, "doc_tokens": e.doc_tokens,
            "orig_answer_text": e.orig_answer_text, "start_position": e.start_position,
            "end_position": e.end_position, "is_impossible": e.is_impossible}


def feature_json(f) -> dict:
    return {"unique_id": f.unique_id, "example_index": f.example_index, "doc_span_index": f.doc_span_index,
            "tokens": f.tokens, "token_to_orig_map": {str(k): v for k, v in f.token_to_orig_map.items()},
            "token_is_max_context": {str(k): v for k, v in f.token_is_max_context.items()},
            "input_ids": f.input_ids, "input_mask": f.input_mask, "segment_ids": f.segment_ids,
            "start_position": f.start_position, "end_position": f.end_position, "is_impossible": f.is_impossible}


def gz_open(path: str):
    """A gzip file to write text to, with no time stamp (the same inputs give the same bytes)."""
    return io.TextIOWrapper(gzip.GzipFile(path, "wb", mtime=0), encoding="utf-8")


def write_jsonl(path: str, rows) -> None:
    with gz_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def gzip_file(path: str) -> None:
    with open(path, "rb") as f, gzip.GzipFile(path + ".gz", "wb", mtime=0) as g:
        g.write(f.read())
    os.remove(path)


def convert(examples, tokenizer, setting: str, is_training: bool) -> list:
    max_seq_length, doc_stride, max_query_length = SETTINGS[setting]
    features = []
    run_squad.convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length,
                                           is_training, features.append)
    return features


def fixed_logits(examples, features, tokenizer, seed: int) -> dict:
    """float32 logits per feature: N(0, 2) rounded to 1/16 (short in JSON, and ties, which Google's
    stable sorts order by position) everywhere (padding included: Google's n-best takes its
    top indexes over all positions), +7 at the start and end tokens of the first gold answer where a
    window holds it (4 windows in 5), +9 at [CLS] in every third window."""
    rng = np.random.RandomState(seed)
    dataset = {}
    for name in ("dev-v1.1", "dev-v2.0"):
        with open(os.path.join(HERE, name + ".json"), encoding="utf-8") as f:
            for article in json.load(f)["data"]:
                for p in article["paragraphs"]:
                    for qa in p["qas"]:
                        dataset[qa["id"]] = [a["text"] for a in qa["answers"]]
    out = collections.OrderedDict()
    for i, f in enumerate(features):
        T = len(f.input_ids)
        start = (np.round(rng.normal(0, 2, T) * 16) / 16).astype(np.float32)
        end = (np.round(rng.normal(0, 2, T) * 16) / 16).astype(np.float32)
        answers = dataset[examples[f.example_index].qas_id]
        if answers and i % 5 != 4:
            pieces = tokenizer.tokenize(answers[0])
            for s in range(len(f.tokens) - len(pieces) + 1):
                if s in f.token_to_orig_map and f.tokens[s:s + len(pieces)] == pieces:
                    start[s] += 7
                    end[s + len(pieces) - 1] += 7
                    break
        if i % 3 == 0:
            start[0] += 9
            end[0] += 9
        out[str(f.unique_id)] = [[float(x) for x in start], [float(x) for x in end]]
    return out


def main():
    tf.logging.set_verbosity(tf.logging.ERROR)
    set_flags(False)
    tokenizer = tokenization.FullTokenizer(vocab_file=VOCAB, do_lower_case=True)
    os.makedirs(OUT, exist_ok=True)
    for name in FILES:
        version2 = name.endswith("v2.0")
        is_training = name.startswith("train")
        set_flags(version2)
        examples = run_squad.read_squad_examples(os.path.join(HERE, name + ".json"), is_training)
        write_jsonl(os.path.join(OUT, f"{name}.examples.jsonl.gz"), map(example_json, examples))
        for setting in SETTINGS:
            features = convert(examples, tokenizer, setting, is_training)
            write_jsonl(os.path.join(OUT, f"{name}-{setting}.features.jsonl.gz"), map(feature_json, features))
            print(name, setting, len(examples), "examples", len(features), "features", file=sys.stderr)
        # As main(): training examples shuffled before conversion, both files at the flags' defaults.
        ordered = list(examples)
        if is_training:
            random.Random(12345).shuffle(ordered)
        writer = run_squad.FeatureWriter(os.path.join(OUT, f"{name}.tf_record"), is_training)
        max_seq_length, doc_stride, max_query_length = SETTINGS["384"]
        run_squad.convert_examples_to_features(ordered, tokenizer, max_seq_length, doc_stride, max_query_length,
                                               is_training, writer.process_feature)
        writer.close()
        gzip_file(os.path.join(OUT, f"{name}.tf_record"))
        if is_training:
            continue
        for seed, setting in enumerate(SETTINGS):
            features = convert(examples, tokenizer, setting, False)
            logits = fixed_logits(examples, features, tokenizer, seed)
            with gz_open(os.path.join(OUT, f"{name}-{setting}.logits.json.gz")) as f:
                json.dump(logits, f)
            results = [run_squad.RawResult(unique_id=int(k), start_logits=v[0], end_logits=v[1])
                       for k, v in logits.items()]
            for threshold in ((0.0, -10.0) if version2 else (0.0,)):
                set_flags(version2, threshold)
                tag = f"{name}-{setting}" + (f"-t{threshold}" if version2 else "")
                run_squad.write_predictions(
                    examples, features, results, 20, 30, True, os.path.join(OUT, f"{tag}.predictions.json"),
                    os.path.join(OUT, f"{tag}.nbest_predictions.json"), os.path.join(OUT, f"{tag}.null_odds.json"))
                gzip_file(os.path.join(OUT, f"{tag}.nbest_predictions.json"))


if __name__ == "__main__":
    main()
